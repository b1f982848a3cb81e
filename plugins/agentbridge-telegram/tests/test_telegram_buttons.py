"""Inline buttons: a permission question carries Allow / Deny; a click is ingested as its
answer text from the clicking user (channel alone, then the whole bridge: ``agentbridge up``,
the fake agent's tool call through the real hook, a stranger's click, a late second click)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT, MALLORY
from test_telegram_e2e import _kill_tmux, _launch, _stop

from agentbridge_telegram.buttons import STALE
from agentbridge_telegram.testing import FakeBotApi, SentMessage

QUESTION = 'Permission needed: Bash ls — reply "yes abc12", "always abc12" or "no abc12"'
LABELS = ["Allow", "Allow for this session", "Deny"]


async def _deliver_question(ledger: Ledger, channel: object) -> SentMessage:
    """A real request asked in CHAT (a click naming none is stale), its question sent."""
    asker = await ledger.ingest("telegram", str(CHAT), str(ALICE), "go", key="m0", agent="demo")
    req = await ledger.open_permission(asker.message.id, "demo", "Bash", "ls", 1e12)
    question = QUESTION.replace("abc12", req.short_id)
    item = await ledger.enqueue_reply("telegram", str(CHAT), question, key="permission:7:ask")
    plain = await ledger.enqueue_reply("telegram", str(CHAT), "just text", key="r1")
    await channel.deliver(item)  # type: ignore[attr-defined]
    await channel.deliver(plain)  # type: ignore[attr-defined]
    return item  # type: ignore[return-value]


async def test_question_has_buttons_and_a_click_is_ingested_as_its_answer(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    short_id = (await _deliver_question(ledger, channel)).text.split('"')[1].split()[1]
    question, plain = fake.sent
    assert [label for label, _ in question.buttons()] == LABELS
    assert dict(question.buttons())["Deny"] == f"no {short_id}"
    assert plain.buttons() == [] and plain.reply_markup is None
    stranger = fake.click(question, MALLORY, "Allow")
    update = fake.click(question, ALICE, "Deny")

    async def stored() -> bool:
        return len(await ledger.list_messages()) == 2

    await async_wait_until(stored, timeout=10, what="the click ingested")
    msg = max(await ledger.list_messages(), key=lambda m: m.id)
    assert (msg.conversation, msg.sender, msg.text) == (str(CHAT), str(ALICE), f"no {short_id}")
    query_id = update["callback_query"]["id"]
    assert msg.platform_id == f"click:{query_id}"

    async def acknowledged() -> bool:
        return bool(fake.markup_edits)

    await async_wait_until(acknowledged, timeout=10, what="the keyboard edited away")
    assert fake.callback_answers == [{"callback_query_id": query_id, "text": "Deny: sent"}]
    (edit,) = fake.markup_edits
    assert (edit["chat_id"], edit["message_id"]) == (CHAT, question.message_id)
    assert question.buttons() == []  # the keyboard is gone from the chat
    # the stranger's click: logged and counted, never ingested, never acknowledged
    assert channel.refused == 1  # handled before Alice's (updates go in order)
    stranger_id = stranger["callback_query"]["id"]
    assert all(a["callback_query_id"] != stranger_id for a in fake.callback_answers)


async def test_a_button_that_answers_nothing_is_acknowledged_and_goes_nowhere(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    await start_channel()
    fake.queries.add("forged")
    fake.add_update(
        {
            "callback_query": {
                "id": "forged",
                "from": {"id": ALICE},
                "message": {"message_id": 5, "chat": {"id": CHAT}},
                "data": "/stop now",
            }
        }
    )

    async def answered() -> bool:
        return bool(fake.callback_answers)

    await async_wait_until(answered, timeout=10, what="the stale click acknowledged")
    assert fake.callback_answers == [{"callback_query_id": "forged", "text": STALE}]
    assert await ledger.list_messages() == []
    assert fake.markup_edits == []


@pytest.fixture
async def bridge(fake: FakeBotApi, tmp_path: Path) -> AsyncIterator[Path]:
    socket = f"abtb-{uuid.uuid4().hex[:8]}"
    proc, log_path = await _launch(fake, tmp_path, socket)
    try:
        yield log_path
    finally:
        await _stop(proc)
        await _kill_tmux(socket)


async def test_click_in_the_real_bridge_allows_the_tool_call(
    fake: FakeBotApi, bridge: Path
) -> None:
    fake.add_message(chat_id=CHAT, user_id=ALICE, text="make the file #fake:tool")

    def asked() -> SentMessage | None:
        return next((s for s in fake.sent if s.buttons()), None)

    async def question_sent() -> bool:
        return asked() is not None

    try:
        await async_wait_until(question_sent, timeout=45, what="the question with buttons")
    except AssertionError:
        log = bridge.read_text(errors="replace")  # noqa: ASYNC240 (failure path only)
        raise AssertionError(log[-3000:]) from None
    question = asked()
    assert question is not None and question.visible.startswith("Permission needed: Bash ")
    assert [label for label, _ in question.buttons()] == LABELS
    short_id = dict(question.buttons())["Allow"].split()[1]
    before = dataclasses.replace(question)  # the keyboard as a slow second phone still shows it
    stranger = fake.click(question, MALLORY, "Allow")

    async def past_stranger() -> bool:
        return fake.confirmed_offset > stranger["update_id"]

    await async_wait_until(past_stranger, timeout=20, what="the stranger's click handled")
    assert fake.callback_answers == [] and question.buttons()  # refused: still unanswered
    fake.click(question, ALICE, "Allow")

    async def done() -> bool:
        return any(s.visible.startswith("tool Bash: allowed") for s in fake.sent)

    await async_wait_until(done, timeout=30, what="the turn completed after the click")
    note = f"Permission {short_id}: allowed (by {ALICE})"
    assert any(s.visible == note for s in fake.sent)
    assert [a["text"] for a in fake.callback_answers] == ["Allow: sent"]

    async def keyboard_removed() -> bool:
        return not question.buttons()

    await async_wait_until(keyboard_removed, timeout=10, what="the keyboard removed")
    fake.click(before, ALICE, "Deny")  # too late: first answer won

    async def told() -> bool:
        return any("already answered by" in s.visible for s in fake.sent)

    await async_wait_until(told, timeout=20, what="the late click told who was first")
    late = f"Permission {short_id} already answered by {ALICE} (allowed)"
    assert any(s.visible == late for s in fake.sent)
    assert not any("denied" in s.visible for s in fake.sent)
