"""Progress edits (``EditingChannel``) against the fake Bot API: one status message, posted
then edited in place; Telegram's "message is not modified" is no error; other refusals are
raised to the caller (``supervisor/progress.py`` logs them and never retries)."""

from __future__ import annotations

import time

import pytest
from agentbridge.models import Message
from agentbridge.plugin.protocols import EditingChannel
from agentbridge.states import MessageState
from telegram_helpers import ALICE, CHAT

from agentbridge_telegram import TelegramChannel
from agentbridge_telegram.api import TelegramApiError
from agentbridge_telegram.testing import FakeBotApi


def _message(platform_id: str | None = f"{CHAT}:41") -> Message:
    now = time.time()
    return Message(
        id=7, channel="telegram", conversation=str(CHAT), sender=str(ALICE),
        platform_id=platform_id, text="do it", agent="demo", priority=0,
        state=MessageState.SUBMITTED, attempt=1, fence=1, lease_owner=None,
        lease_expires_at=None, heartbeat_at=None, reply=None, reason=None, meta={},
        created_at=now, updated_at=now,
    )  # fmt: skip


async def test_status_posted_once_then_edited_in_place(fake: FakeBotApi, start_channel) -> None:
    channel = await start_channel()
    assert isinstance(channel, EditingChannel)
    message = _message()
    status = await channel.edit_message(message, "working (1 s, 1 step)…", None)
    [sent] = fake.sent
    assert str(sent.message_id) == status and sent.reply_to == 41 and sent.chat_id == CHAT
    again = await channel.edit_message(message, "working (6 s, 3 steps): step 3/6", status)
    assert again == status and len(fake.sent) == 1  # no second message
    assert sent.visible == "working (6 s, 3 steps): step 3/6"
    assert [text for _, text in sent.edits] == ["working (6 s, 3 steps): step 3/6"]


async def test_an_unchanged_text_is_not_an_error(fake: FakeBotApi, start_channel) -> None:
    channel = await start_channel()
    status = await channel.edit_message(_message(), "working (1 s, 1 step)…", None)
    assert await channel.edit_message(_message(), "working (1 s, 1 step)…", status) == status
    assert fake.calls.count("editMessageText") == 1  # Telegram said "not modified"
    assert fake.sent[0].edits == []


async def test_other_refusals_reach_the_caller_once(fake: FakeBotApi, start_channel) -> None:
    channel = await start_channel()
    with pytest.raises(TelegramApiError, match="message to edit not found"):
        await channel.edit_message(_message(), "working…", "9999")
    assert fake.calls.count("editMessageText") == 1  # never retried
    fake.blocked_chats.add(CHAT)
    with pytest.raises(TelegramApiError, match="blocked"):
        await channel.edit_message(_message(None), "working…", None)
    assert fake.calls.count("sendMessage") == 1


async def test_not_started_is_an_error_not_a_hang() -> None:
    with pytest.raises(Exception, match="not started"):
        await TelegramChannel(env={}).edit_message(_message(), "working…", None)
