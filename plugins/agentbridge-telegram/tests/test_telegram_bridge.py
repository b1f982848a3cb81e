"""The channel inside the bridge's own machinery: the real outbox relay and the contract suite."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext, ErrorClass
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until
from agentbridge.testing.contract import ChannelContract, HarnessBase
from telegram_helpers import ALICE, CHAT

from agentbridge_telegram import TelegramChannel, parse_settings
from agentbridge_telegram.formatting import utf16_len
from agentbridge_telegram.testing import FakeBotApi


async def test_relay_retry_never_resends_parts_already_delivered(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    """The relay chunks a 10,000-char reply in 3 and retries the whole reply when Telegram
    refuses part 3 (429): parts 1 and 2 must not reach the chat twice, and only part 1 quotes
    the sender."""
    channel = await start_channel()
    relay = OutboxRelay(ledger, {"telegram": channel}, OutboxConfig(backoff=(0.05,)))
    task = asyncio.create_task(relay.run())
    try:
        text = "\n".join(f"line {i:05d} " + "z" * 40 for i in range(200))[:10_000]
        fake.fail_next("ok", "ok", "429_now")
        item = await ledger.enqueue_reply(
            "telegram", str(CHAT), text, key="r1", reply_to=f"{CHAT}:31"
        )
        relay.poke()

        async def sent() -> bool:
            row = await ledger.get_reply(item.id)
            return row.state is OutboxState.SENT

        await async_wait_until(sent, timeout=10, what="reply sent after one retry")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(fake.sent) == 3
    assert [s.reply_to for s in fake.sent] == [31, None, None]
    assert all(utf16_len(s.visible) <= 4096 for s in fake.sent)
    assert "\n".join(s.visible for s in fake.sent).replace("\n", "") == text.replace("\n", "")
    row = await ledger.get_reply(item.id)
    assert row.platform_message_id == str(fake.sent[0].message_id)


# ------------------------------------------------------------------ the contract suite


class TelegramHarness(HarnessBase):
    """The fake Bot API as the platform: an ack is the next getUpdates confirming the update."""

    can_fail = True

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeBotApi()
        token = tmp_path / "token"
        token.write_text(self.fake.token)
        token.chmod(0o600)
        self.token_file = token
        self.message_ids: dict[str, int] = {}
        super().__init__(TelegramChannel(env={}))

    async def start(self, ctx: ChannelContext) -> None:
        await self.fake.start()
        assert isinstance(self.channel, TelegramChannel)
        self.channel.settings = parse_settings(
            {
                "token_file": str(self.token_file),
                "allowed_users": [ALICE],
                "base_url": self.fake.base_url,
                "poll_timeout": 5,
            }
        )
        await self.channel.start(ctx)

    async def stop(self) -> None:
        await self.channel.stop()
        await self.fake.stop()

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        message_id = self.message_ids.setdefault(platform_id, len(self.message_ids) + 1)
        update = self.fake.add_message(int(conversation), int(sender), text, message_id=message_id)
        update_id = update["update_id"]
        polls = self.fake.calls.count("getUpdates")

        async def answered() -> bool:
            if update_id in self.fake.confirm_times:
                return True
            # refused (ingest failed): the channel polled again without confirming it
            return self.fake.calls.count("getUpdates") > polls + 1

        await async_wait_until(answered, timeout=10, what=f"answer to {platform_id}")
        if update_id in self.fake.confirm_times:
            self.acks.setdefault(platform_id, []).append(self.fake.confirm_times[update_id])

    def sent(self) -> list[str]:
        return [s.visible for s in self.fake.sent]

    def sent_files(self) -> list[tuple[str, bytes]]:
        return [(f.name, f.data) for f in self.fake.uploads]

    def fail_deliveries(self, error_class: ErrorClass | None) -> None:
        self.fake.always_fail = {
            None: None,
            ErrorClass.PERMANENT: "blocked",
            ErrorClass.TRANSIENT: "429_now",  # flood control: Telegram refused the request
            ErrorClass.UNKNOWN: "reset",  # posted, then the connection reset: answer lost
        }[error_class]


class TestTelegramContract(ChannelContract):
    conversation = str(CHAT)
    sender = str(ALICE)

    @pytest.fixture
    def harness(self, tmp_path: Path) -> TelegramHarness:
        return TelegramHarness(tmp_path)
