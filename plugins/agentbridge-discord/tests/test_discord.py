"""The Discord channel over the real discord.py against the fake Discord: in, catch-up, out."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from agentbridge.config import ConfigError
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, Receipt
from agentbridge.testing import async_wait_until
from discord_helpers import ALICE, DM, GUILD, MALLORY, TEXT, THREAD, ledger_ingest

from agentbridge_discord import DiscordChannel, load_token, parse_settings
from agentbridge_discord.cursor import CursorStore
from agentbridge_discord.testing import BOT_ID


async def rows(ledger: Ledger) -> list[Any]:
    return await ledger.list_messages(channel="discord")


async def wait_rows(ledger: Ledger, count: int) -> list[Any]:
    async def enough() -> bool:
        return len(await rows(ledger)) >= count

    await async_wait_until(enough, timeout=10, what=f"{count} ledger row(s)")
    return await rows(ledger)


async def reply(ledger: Ledger, text: str, conversation: int = DM, reply_to: str | None = None):
    return await ledger.enqueue_reply(
        "discord", str(conversation), text, key=f"r-{time.monotonic_ns()}", reply_to=reply_to
    )


# ------------------------------------------------------------------ inbound and catch-up


async def test_dm_is_ingested_and_cursor_stored(fake, ledger, start_channel, tmp_path) -> None:
    channel = await start_channel()
    mid = await fake.post(DM, ALICE, "hello bot")
    [row] = await wait_rows(ledger, 1)
    assert row.text == "hello bot" and row.conversation == str(DM) and row.sender == str(ALICE)
    assert row.platform_id == str(mid)
    cursor = CursorStore(tmp_path / "state").get(DM)  # read back from the file
    assert cursor is not None and cursor.last == mid
    assert channel.fatal is None
    assert fake.identify[0]["intents"] & (1 << 15), "Message Content intent not requested"
    assert fake.compression[0] in ("zlib-stream", "zstd-stream")  # what discord.py asks for


async def test_killed_before_ingest_restart_catches_up_one_row(fake, ledger, start_channel) -> None:
    """MESSAGE_CREATE arrives, the bridge dies before the ledger commit: the cursor never
    moved, so the restarted channel reads the message back from history (one row)."""
    await start_channel()
    first = await fake.post(DM, ALICE, "first")
    await wait_rows(ledger, 1)
    stuck = asyncio.Event()

    async def never_commits(*args: Any, **kw: Any) -> Any:
        stuck.set()
        await asyncio.Event().wait()  # "killed" mid-ingest: never returns

    dying = await start_channel(ingest=never_commits)
    lost = await fake.post(DM, ALICE, "sent while dying")
    await asyncio.wait_for(stuck.wait(), 10)
    await dying.stop()  # the kill
    offline = fake.message(DM, ALICE, "sent while down")  # history only: nobody connected
    await start_channel()
    got = await wait_rows(ledger, 3)
    assert [r.text for r in got] == ["first", "sent while dying", "sent while down"]
    assert [r.platform_id for r in got] == [str(first), str(lost), offline["id"]]


async def test_live_and_catch_up_of_one_message_make_one_row(
    fake, ledger, start_channel, tmp_path
) -> None:
    channel = await start_channel()
    await fake.post(DM, ALICE, "seed")
    await wait_rows(ledger, 1)
    await channel.stop()
    payload = fake.message(DM, ALICE, "twice")  # missed while down…
    channel = await start_channel()
    await fake.dispatch("MESSAGE_CREATE", payload)  # …and dispatched live as well
    await wait_rows(ledger, 2)
    assert await channel.catch_up(DM)  # a third look: nothing new
    await asyncio.sleep(0)  # let a queued live handler finish
    got = await rows(ledger)
    assert [r.text for r in got] == ["seed", "twice"]
    assert CursorStore(tmp_path / "state").get(DM).last == int(payload["id"])


async def test_reconnect_resumes_and_replays_missed_events(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    await fake.post(DM, ALICE, "before")
    await wait_rows(ledger, 1)
    sessions = channel.sessions
    await fake.reconnect()  # op 7

    async def resumed() -> bool:
        return channel.sessions > sessions

    await async_wait_until(resumed, timeout=15, what="RESUMED")
    assert fake.ops.count(6) == 1 and fake.ops.count(2) == 1  # resumed, never re-identified
    await fake.drop()  # a network cut this time
    await fake.post(DM, ALICE, "during the cut")  # queued in the session, replayed on RESUME
    got = await wait_rows(ledger, 2)
    assert [r.text for r in got] == ["before", "during the cut"]
    assert fake.ops.count(2) == 1


async def test_allowlists_refuse_and_log_no_text(fake, ledger, start_channel, caplog) -> None:
    caplog.set_level(logging.INFO)
    channel = await start_channel(allowed_guilds=[GUILD], allowed_channels=[TEXT])
    await fake.post(DM, MALLORY, "secret stranger text")
    await fake.post(TEXT, ALICE, "humans chatting", guild_id=GUILD)  # no mention: not for us
    await fake.post(TEXT, ALICE, "hi", guild_id=GUILD + 1, mentions=(BOT_ID,))  # other guild
    await fake.post(TEXT + 7, ALICE, "hi", guild_id=GUILD, mentions=(BOT_ID,))  # other channel
    await fake.post(TEXT, ALICE, f"<@{BOT_ID}> build it", guild_id=GUILD, mentions=(BOT_ID,))
    [row] = await wait_rows(ledger, 1)
    assert row.text == "build it" and row.conversation == str(TEXT)

    async def refused() -> bool:
        return channel.refused >= 3

    await async_wait_until(refused, timeout=5, what=f"3 refusals, not {channel.refused}")
    assert channel.refused == 3
    assert "secret stranger text" not in caplog.text
    assert f"refused a message from user {MALLORY}" in caplog.text


async def test_thread_is_a_conversation_and_reply_goes_there(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    mid = await fake.post(THREAD, ALICE, f"<@!{BOT_ID}> in a thread", guild_id=GUILD,
                          mentions=(BOT_ID,))  # fmt: skip
    [row] = await wait_rows(ledger, 1)
    assert row.conversation == str(THREAD) and row.meta["guild_id"] == str(GUILD)
    item = await reply(ledger, "thread answer", THREAD, reply_to=row.platform_id)
    await channel.deliver(item)
    [sent] = fake.sent
    assert (sent.channel_id, sent.reply_to, sent.content) == (THREAD, mid, "thread answer")


async def test_empty_content_is_logged_and_answered(fake, ledger, start_channel, caplog) -> None:
    await start_channel()
    mid = await fake.post(TEXT, ALICE, f"<@{BOT_ID}>", guild_id=GUILD, mentions=(BOT_ID,))

    async def told() -> bool:
        return any(s.reply_to == mid for s in fake.sent)

    await async_wait_until(told, timeout=10, what="the no-text notice")
    assert "Message Content intent" in caplog.text
    assert await rows(ledger) == []


# ------------------------------------------------------------------ outbound


async def test_long_reply_is_chunked_first_part_replies(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    text = "\n".join(f"line {i:04d} **bold** `code`" for i in range(200))
    item = await reply(ledger, text, reply_to="12345")
    first = await channel.deliver(item)
    assert len(fake.sent) == 3 and all(len(s.content) <= 2000 for s in fake.sent)
    assert "".join(s.content for s in fake.sent) == text  # markdown as written
    assert [s.reply_to for s in fake.sent] == [12345, None, None]
    assert first == str(fake.sent[0].message_id)
    assert all(s.nonce for s in fake.sent) and len({s.nonce for s in fake.sent}) == 3


async def test_short_429_is_waited_out_long_one_is_rate_limited(
    fake, ledger, start_channel
) -> None:
    channel = await start_channel()
    fake.fail_next = ["429"]  # retry_after 0.3 s: discord.py waits it out itself
    began = time.monotonic()
    await channel.deliver(await reply(ledger, "after a short wait"))
    assert time.monotonic() - began >= 0.3 and fake.reply_texts() == ["after a short wait"]
    fake.fail_next = ["429_long"]
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(await reply(ledger, "later"))
    assert caught.value.error_class is ErrorClass.TRANSIENT and caught.value.retry_after == 45


@pytest.mark.parametrize("mode", ["403", "404"])
async def test_missing_access_and_unknown_channel_are_permanent(
    fake, ledger, start_channel, mode
) -> None:
    channel = await start_channel()
    fake.fail_next = [mode]
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(await reply(ledger, "nope"))
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert fake.sent == []


async def test_timeout_is_unknown_reconcile_finds_it_retry_is_deduped(
    fake, ledger, start_channel
) -> None:
    channel = await start_channel(request_timeout=1)
    fake.fail_next, fake.hang_seconds = ["timeout"], 3.0
    item = await reply(ledger, "in doubt")
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.UNKNOWN
    found = await channel.reconcile(item)
    assert found.landed is True and found.platform_message_id == str(fake.sent[0].message_id)
    other = await reply(ledger, "never sent")
    assert (await channel.reconcile(other)).landed is False
    await channel.deliver(item)  # a retry anyway: Discord's nonce check returns the first
    assert fake.reply_texts() == ["in doubt"]


async def test_receipts_are_reactions_that_replace_each_other(fake, ledger, start_channel):
    channel = await start_channel()
    mid = await fake.post(DM, ALICE, "react to me")
    [row] = await wait_rows(ledger, 1)
    for status in ("queued", "working", "replied"):
        await channel.receipt(Receipt(row.id, "discord", str(DM), status))  # type: ignore[arg-type]
    assert [(m, e) for m, _, i, e in fake.reactions if i == mid] == [
        ("PUT", "👀"), ("DELETE", "👀"), ("PUT", "✅"),
    ]  # fmt: skip
    await fake.stop()
    await channel.receipt(Receipt(row.id, "discord", str(DM), "failed"))  # type: ignore[arg-type]


# ------------------------------------------------------------------ secrets


async def test_token_errors_are_one_line(fake, tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_text("abc")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"readable by others.*chmod 600"):
        load_token(parse_settings({"token_file": str(path)}), env={})
    with pytest.raises(ConfigError, match="AGENTBRIDGE_DISCORD_TOKEN"):
        load_token(parse_settings({}), env={})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_settings({"alowed_users": [1]})
    bad = DiscordChannel(
        parse_settings(fake.settings_table()), env={"AGENTBRIDGE_DISCORD_TOKEN": "wrong"}
    )
    from agentbridge.plugin.protocols import ChannelContext

    ctx = ChannelContext("discord", {}, ledger_ingest(None), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="token was rejected") as caught:
        await bad.start(ctx)
    assert "wrong" not in str(caught.value)
