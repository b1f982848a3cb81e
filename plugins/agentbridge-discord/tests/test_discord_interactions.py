"""Buttons and slash commands over the real discord.py against the fake Discord, with the
core's own permission relay and command parser deciding what a click or a command means."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agentbridge.config import parse_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.supervisor.commands import COMMANDS, parse_command
from agentbridge.supervisor.permissions import PermissionRelay
from agentbridge.testing import async_wait_until
from discord_helpers import ALICE, DM, GUILD, MALLORY, TEXT, THREAD, asked_in, ledger_ingest

from agentbridge_discord.components import ANSWER_PREFIX
from agentbridge_discord.interacting import STALE
from agentbridge_discord.testing import FakeDiscord


def relayed_ingest(ledger: Ledger, relay: PermissionRelay, seen: list[tuple[Any, ...]]) -> Any:
    """The bridge's ingest order (up.py): the permission relay first, then the ledger."""
    plain = ledger_ingest(ledger)

    async def ingest(conversation: str, sender: str, text: str, **kw: Any) -> Any:
        seen.append((conversation, sender, text, kw.get("key")))
        taken = await relay.intercept("discord", conversation, sender, text)
        return taken if taken is not None else await plain(conversation, sender, text, **kw)

    return ingest


async def test_permission_buttons_answer_through_the_core_relay(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = parse_config(
        {"state_dir": str(tmp_path / "s"), "agents": {"demo": {"runtime": "demo"}},
         "permissions": {"timeout": 30}}
    )  # fmt: skip
    relay = PermissionRelay(ledger, config)
    seen: list[tuple[Any, ...]] = []
    channel = await start_channel(ingest=relayed_ingest(ledger, relay, seen))
    await fake.post(DM, ALICE, "please build")
    await async_wait_until(lambda: _rows(ledger, 1), timeout=10, what="the message row")
    assert await ledger.claim_next("demo", "owner", 60) is not None  # in flight on demo
    event = {"tool_name": "Bash", "tool_input": {"command": "make"}, "can_always": True}
    decision = asyncio.create_task(relay.handle({"agent": "demo", "event": event}))

    async def asked() -> bool:
        return bool(await ledger.list_replies())

    await async_wait_until(asked, timeout=10, what="the permission question in the outbox")
    [question] = await ledger.list_replies()
    await channel.deliver(question)  # what the outbox relay does with it
    [sent] = fake.sent
    buttons = fake.buttons(sent.components)
    short = question.text.split('"yes ', 1)[1][:5]
    assert buttons == [
        ("Allow", f"{ANSWER_PREFIX}yes {short}"),
        ("Allow for this session", f"{ANSWER_PREFIX}always {short}"),
        ("Deny", f"{ANSWER_PREFIX}no {short}"),
    ]
    assert sent.content == question.text  # the text still says what to type

    stranger = await fake.click(DM, MALLORY, sent.message_id, buttons[2][1])
    await async_wait_until(lambda: _callback(fake, stranger), timeout=10, what="a refusal")
    [refusal] = [c for c in fake.callbacks if c.interaction_id == stranger]
    assert refusal.type == 4 and refusal.ephemeral and not decision.done()
    assert channel.refused == 1 and all(s[1] != str(MALLORY) for s in seen)

    click = await fake.click(DM, ALICE, sent.message_id, buttons[1][1])
    answer = await asyncio.wait_for(decision, 10)
    assert answer["decision"] == "allow" and answer["always"] is True
    assert seen[-1][:3] == (str(DM), str(ALICE), f"always {short}")
    await async_wait_until(lambda: _callback(fake, click), timeout=10, what="the click's ack")
    [ack] = [c for c in fake.callbacks if c.interaction_id == click]
    assert ack.type == 7 and ack.data["components"] == []  # no second click possible
    assert ack.data["content"].endswith("→ Allow for this session (clicked by user1)")
    assert fake.history[DM][-1]["components"] == []  # Discord edited the question
    notes = [r.text for r in await ledger.list_replies()]
    assert f"Permission {short}: allowed for this session (by {ALICE})" in notes


async def test_a_click_is_acknowledged_only_after_the_ledger_has_it(
    fake: FakeDiscord, ledger: Ledger, start_channel
) -> None:
    plain = ledger_ingest(ledger)
    at_ingest: list[int] = []
    release = asyncio.Event()

    async def slow(conversation: str, sender: str, text: str, **kw: Any) -> Any:
        at_ingest.append(len(fake.callbacks))
        await release.wait()
        return await plain(conversation, sender, text, **kw)

    await start_channel(ingest=slow)
    short = await asked_in(ledger, TEXT)
    mid = int(fake.message(TEXT, ALICE, "question", guild_id=GUILD)["id"])  # to click on
    click = await fake.click(TEXT, ALICE, mid, f"{ANSWER_PREFIX}no {short}", guild_id=GUILD)
    await async_wait_until(lambda: _true(bool(at_ingest)), timeout=10, what="the ingest")
    await asyncio.sleep(0.2)  # the ingest is blocked: no ack may have gone out meanwhile
    assert fake.callbacks == [] and at_ingest == [0]
    release.set()
    await async_wait_until(lambda: _callback(fake, click), timeout=10, what="the ack")
    row = (await ledger.list_messages(channel="discord"))[-1]
    assert (row.text, row.platform_id, row.conversation) == (f"no {short}", f"click-{click}",
                                                             str(TEXT))  # fmt: skip


async def test_a_failed_ingest_tells_the_clicker_and_stores_nothing(
    fake: FakeDiscord, ledger: Ledger, start_channel
) -> None:
    async def broken(*args: Any, **kw: Any) -> Any:
        raise OSError("disk full")

    channel = await start_channel(ingest=broken)
    short = await asked_in(ledger, DM)
    mid = int(fake.message(DM, ALICE, "q")["id"])  # in the history, not dispatched
    click = await fake.click(DM, ALICE, mid, f"{ANSWER_PREFIX}yes {short}")
    await async_wait_until(lambda: _callback(fake, click), timeout=10, what="the answer")
    [told] = fake.callbacks
    assert told.type == 4 and told.ephemeral and "could not store" in told.data["content"]
    assert channel.ingest_failures == 1 and fake.history[DM][-1].get("components") is None


async def test_a_click_naming_another_channels_request_is_dropped(
    fake: FakeDiscord, ledger: Ledger, start_channel, caplog: Any
) -> None:
    """A button copied to (or forged in) another channel answers nothing there: told so,
    logged, never ingested; the same answer clicked where it was asked is taken."""
    seen: list[str] = []
    plain = ledger_ingest(ledger)

    async def ingest(conversation: str, sender: str, text: str, **kw: Any) -> Any:
        seen.append(text)
        return await plain(conversation, sender, text, **kw)

    await start_channel(ingest=ingest)
    short = await asked_in(ledger, DM)
    mid = int(fake.message(TEXT, ALICE, "elsewhere", guild_id=GUILD)["id"])
    for answer in (f"yes {short}", "no zzzzz"):  # another channel's request; no request
        wrong = await fake.click(TEXT, ALICE, mid, ANSWER_PREFIX + answer, guild_id=GUILD)
        await async_wait_until(lambda i=wrong: _callback(fake, i), timeout=10, what="stale")
        told = next(c for c in fake.callbacks if c.interaction_id == wrong)
        assert told.ephemeral and told.data["content"] == STALE
    assert seen == [] and "dropped a click naming no request asked in" in caplog.text
    here = int(fake.message(DM, ALICE, "question")["id"])
    right = await fake.click(DM, ALICE, here, f"{ANSWER_PREFIX}yes {short}")
    await async_wait_until(lambda: _callback(fake, right), timeout=10, what="the answer")
    assert seen == [f"yes {short}"]


async def test_slash_commands_are_registered_and_run_as_the_typed_command(
    fake: FakeDiscord, ledger: Ledger, start_channel
) -> None:
    seen: list[tuple[Any, ...]] = []
    plain = ledger_ingest(ledger)

    async def ingest(conversation: str, sender: str, text: str, **kw: Any) -> Any:
        seen.append((conversation, sender, text, kw.get("key")))
        return await plain(conversation, sender, text, **kw)

    await start_channel(ingest=ingest)
    await async_wait_until(lambda: _true(bool(fake.commands)), timeout=10, what="registration")
    [registered] = fake.commands  # one bulk overwrite at start
    assert [c["name"] for c in registered] == list(COMMANDS)
    retry = next(c for c in registered if c["name"] == "retry")
    assert retry["options"] == [{"type": 3, "name": "id", "description": "id", "required": True}]
    assert all(len(c["description"]) <= 100 for c in registered)
    status = await fake.slash(DM, ALICE, "status")
    again = await fake.slash(THREAD, ALICE, "retry", "12", guild_id=GUILD, parent_id=TEXT)
    denied = await fake.slash(DM, MALLORY, "stop")
    for iid in (status, again, denied):
        await async_wait_until(lambda i=iid: _callback(fake, i), timeout=10, what="acks")
    texts = [s[2] for s in seen]
    assert texts == ["/status", "/retry 12"]  # the stranger's /stop never got in
    assert [parse_command(t).name for t in texts] == ["status", "retry"]  # type: ignore[union-attr]
    assert seen[1][0] == str(THREAD) and seen[1][3] == f"slash-{again}"
    echo = next(c for c in fake.callbacks if c.interaction_id == again)
    assert echo.type == 4 and not echo.ephemeral and echo.data["content"].startswith("`/retry 12`")
    refusal = next(c for c in fake.callbacks if c.interaction_id == denied)
    assert refusal.ephemeral and "not authorised" in refusal.data["content"]


async def test_allowlisted_channels_bind_interactions_too(
    fake: FakeDiscord, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel(allowed_guilds=[GUILD], allowed_channels=[TEXT])
    inside = await fake.slash(THREAD, ALICE, "status", guild_id=GUILD, parent_id=TEXT)
    outside = await fake.slash(TEXT + 5, ALICE, "status", guild_id=GUILD)
    elsewhere = await fake.slash(TEXT, ALICE, "status", guild_id=GUILD + 1)
    for iid in (inside, outside, elsewhere):
        await async_wait_until(lambda i=iid: _callback(fake, i), timeout=10, what="acks")
    [row] = await ledger.list_messages(channel="discord")
    assert row.conversation == str(THREAD) and channel.refused == 2


async def _rows(ledger: Ledger, count: int) -> bool:
    return len(await ledger.list_messages(channel="discord")) >= count


async def _callback(fake: FakeDiscord, iid: int) -> bool:
    return any(c.interaction_id == iid for c in fake.callbacks)


async def _true(value: bool) -> bool:
    return value
