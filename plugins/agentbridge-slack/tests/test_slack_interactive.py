"""Buttons and slash commands over Socket Mode: ingest (allowlist applies), then ack."""

from __future__ import annotations

import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from slack_helpers import ALICE, CHAN, DM, MALLORY, ledger_ingest, open_request

from agentbridge_slack.interactive import command_text
from agentbridge_slack.testing import Envelope, FakeSlack

QUESTION = 'Permission needed: Bash rm -rf build — reply "yes ab12c", "always ab12c" or "no ab12c"'


async def acked(env: Envelope, times: int = 1) -> None:
    async def check() -> bool:
        return len(env.ack_times) >= times

    await async_wait_until(check, timeout=10, what=f"ack #{times} of {env.type}")


async def ask(fake: FakeSlack, ledger: Ledger, channel, conversation: str) -> dict:
    """The permission relay's question for a real request asked in ``conversation``,
    delivered: the posted message (with its buttons; their answers name ``ab12c``)."""
    short = await open_request(ledger, conversation)
    item = await ledger.enqueue_reply(
        "slack", conversation, QUESTION.replace("ab12c", short), key=f"permission:{short}:ask"
    )
    await channel.deliver(item)
    return fake.posted[-1]


def short_of(question: dict) -> str:
    """The request's short id the question's buttons answer."""
    return str(question["blocks"][1]["elements"][0]["value"]).split()[1]


async def test_a_question_has_buttons_and_a_click_is_the_typed_answer(
    fake: FakeSlack, ledger: Ledger, start_channel
) -> None:
    commits: list[tuple[str, float]] = []
    channel = await start_channel(ingest=ledger_ingest(ledger, commits))
    top = fake.user_message(CHAN, ALICE, "clean the build", mention=True)
    await async_wait_until(lambda: _rows(ledger, 1), timeout=10, what="the mention stored")
    thread = f"{CHAN}:{top['ts']}"
    question = await ask(fake, ledger, channel, thread)
    assert question["thread_ts"] == top["ts"]
    [section, actions] = question["blocks"]
    assert section["text"]["text"].startswith("Permission needed: Bash")
    ab12c = short_of(question)
    assert [(b["text"]["text"], b["value"], b.get("style")) for b in actions["elements"]] == [
        ("Allow", f"yes {ab12c}", "primary"),
        ("Allow for this session", f"always {ab12c}", None),
        ("Deny", f"no {ab12c}", "danger"),
    ]
    env = fake.click(question, ALICE, "Allow for this session")
    await acked(env)
    rows = await ledger.list_messages(channel="slack")
    assert [(r.conversation, r.sender, r.text) for r in rows][-1] == (
        thread,
        ALICE,
        f"always {ab12c}",
    )
    [(_key, committed)] = commits[-1:]
    assert env.ack_times[0] >= committed  # acked after the commit
    # then the question is edited: who answered what, no buttons left
    await async_wait_until(lambda: _true(fake.updates), timeout=10, what="chat.update")
    [update] = fake.updates
    assert update["ts"] == question["ts"] and update["channel"] == CHAN
    assert [b["type"] for b in update["blocks"]] == ["section", "context"]
    assert f"<@{ALICE}>" in update["blocks"][1]["elements"][0]["text"]
    # Slack redelivers the click: still one row
    fake.redeliver(env.envelope_id)
    await acked(env, times=2)
    assert len(await ledger.list_messages(channel="slack")) == 2


async def test_a_strangers_click_is_refused_acked_and_changes_nothing(
    fake: FakeSlack, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel(allowed_teams=["T1"])
    question = await ask(fake, ledger, channel, DM)
    asked = await ledger.list_messages(channel="slack")  # the request's own message
    env = fake.click(question, MALLORY, "Allow")
    await acked(env)
    assert await ledger.list_messages(channel="slack") == asked
    assert channel.refused == 1 and fake.updates == []
    env = fake.click(question, ALICE, "Deny", team="T2")  # allowed user, other workspace
    await acked(env)
    assert await ledger.list_messages(channel="slack") == asked and channel.refused == 2
    env = fake.click(question, ALICE, "Deny")
    await acked(env)
    [_asker, row] = await ledger.list_messages(channel="slack")
    assert (row.conversation, row.text) == (DM, f"no {short_of(question)}")  # the DM


async def test_a_click_naming_another_conversations_request_is_dropped(
    fake: FakeSlack, ledger: Ledger, start_channel, caplog: pytest.LogCaptureFixture
) -> None:
    """A button copied to (or forged in) another conversation answers nothing there: acked,
    logged, never ingested, the question not edited; clicked where it was asked, it is taken."""
    channel = await start_channel()
    question = await ask(fake, ledger, channel, DM)
    asked = await ledger.list_messages(channel="slack")
    elsewhere = dict(question, channel=CHAN)  # the same buttons, shown in another channel
    env = fake.click(elsewhere, ALICE, "Deny")
    await acked(env)
    forged = dict(question, blocks=[question["blocks"][0], dict(question["blocks"][1])])
    forged["blocks"][1]["elements"] = [dict(b, value="no zzzzz") for b in
                                       question["blocks"][1]["elements"]]  # fmt: skip
    env = fake.click(forged, ALICE, "Deny")  # names no request at all
    await acked(env)
    assert await ledger.list_messages(channel="slack") == asked and fake.updates == []
    assert caplog.text.count("dropped a click naming no request asked in") == 2
    assert f"asked in {CHAN}" in caplog.text
    env = fake.click(question, ALICE, "Deny")
    await acked(env)
    row = (await ledger.list_messages(channel="slack"))[-1]
    assert (row.conversation, row.text) == (DM, f"no {short_of(question)}")


async def test_slash_commands_are_ingested_as_the_command_text(
    fake: FakeSlack, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    first = fake.slash(CHAN, ALICE, "/agentbridge", "stop")
    await acked(first)
    await acked(fake.slash(DM, ALICE, "/agentbridge"))
    await acked(fake.slash(DM, ALICE, "/stop"))  # the app may register /stop itself
    await acked(fake.slash(DM, MALLORY, "/agentbridge", "new"))
    fake.redeliver(first.envelope_id)
    await acked(first, times=2)
    rows = await ledger.list_messages(channel="slack")
    assert [(r.conversation, r.sender, r.text) for r in rows] == [
        (CHAN, ALICE, "/stop"),
        (DM, ALICE, "/help"),
        (DM, ALICE, "/stop"),
    ]
    assert rows[0].platform_id == f"{CHAN}:command:{first.payload['trigger_id']}"
    assert channel.refused == 1
    assert channel._cursor is not None and channel._cursor.get(CHAN) is None  # not history


@pytest.mark.parametrize(
    ("command", "text", "want"),
    [
        ("/agentbridge", "stop", "/stop"),
        ("/agentbridge", " retry 12 ", "/retry 12"),
        ("/agentbridge", "/status", "/status"),
        ("/AgentBridge", "", "/help"),
        ("/stop", "", "/stop"),
        ("/use", "reviewer", "/use reviewer"),
    ],
)
def test_command_text(command: str, text: str, want: str) -> None:
    assert command_text(command, text, "/agentbridge") == want


async def _rows(ledger: Ledger, count: int) -> bool:
    return len(await ledger.list_messages(channel="slack")) >= count


async def _true(value: object) -> bool:
    return bool(value)


async def test_an_unreadable_payload_is_acked_not_resent_forever(
    fake: FakeSlack, ledger: Ledger, start_channel
) -> None:
    await start_channel()
    odd = fake._envelope("interactive", {"type": "block_actions", "actions": 5, "user": ALICE})
    await acked(odd)
    env = fake.slash(DM, ALICE, "/agentbridge", "status")  # the channel still works
    await acked(env)
    assert [r.text for r in await ledger.list_messages(channel="slack")] == ["/status"]
