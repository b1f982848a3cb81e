"""Chat commands from Telegram through the real bridge: answered by the bridge as a reply to the
command's message, never pasted into the agent; a stranger's command is refused by the
allowlist like any of their messages; Telegram's own ``/start`` (a bot's first message) gets
the command list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT, MALLORY
from test_telegram_e2e import bridge  # noqa: F401  (a fixture)

from agentbridge_telegram.intake import NOT_AUTHORISED
from agentbridge_telegram.testing import FakeBotApi

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


async def test_commands_from_telegram(fake: FakeBotApi, bridge: Path) -> None:  # noqa: F811
    fake.add_message(chat_id=MALLORY, user_id=MALLORY, text="/status")
    start = fake.add_message(chat_id=CHAT, user_id=ALICE, text="/start")
    status = fake.add_message(chat_id=CHAT, user_id=ALICE, text="/status@agentbridge_bot")

    async def answered() -> bool:
        return sum(1 for s in fake.sent if s.chat_id == CHAT) >= 2

    try:
        await async_wait_until(answered, timeout=45, what="both answers on Telegram")
    except AssertionError:
        log = bridge.read_text(errors="replace")  # noqa: ASYNC240 (failure path only)
        raise AssertionError(log[-3000:]) from None
    by_reply = {s.reply_to: s.visible for s in fake.sent}
    assert by_reply[start["message"]["message_id"]].startswith("unknown command /start")
    assert "/stop" in by_reply[start["message"]["message_id"]]
    assert by_reply[status["message"]["message_id"]].startswith("agent demo (demo): ")
    # a stranger gets the channel's refusal, never a command's answer
    assert [s.visible for s in fake.sent if s.chat_id == MALLORY] == [NOT_AUTHORISED]
    assert not any(s.visible.startswith("echo:") for s in fake.sent)  # the agent saw none
