"""The core's channel contract suite, run against the real SDK and the fake Lark.

An ack is the SDK's reply frame carrying ``"code": 200`` for the event's frame.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agentbridge.plugin.protocols import ChannelContext, ErrorClass
from agentbridge.testing import async_wait_until
from agentbridge.testing.contract import ChannelContract, HarnessBase
from lark_helpers import ALICE, DM, write_secret

from agentbridge_lark import LarkChannel, parse_settings
from agentbridge_lark.testing import APP_ID, APP_SECRET, FakeLark


class LarkHarness(HarnessBase):
    can_fail = True

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeLark()
        self.secret = write_secret(tmp_path / "secret", APP_SECRET)
        self.event_of: dict[str, str] = {}
        super().__init__(LarkChannel(env={}))

    async def start(self, ctx: ChannelContext) -> None:
        await self.fake.start()
        self.fake.chats[DM] = "p2p"
        channel = self.channel
        assert isinstance(channel, LarkChannel)
        channel.settings = parse_settings(
            {
                "app_id": APP_ID,
                "app_secret_file": str(self.secret),
                "allowed_users": [ALICE],
                "domain": self.fake.base_url,
                "request_timeout": 1,
            }
        )
        connects = self.fake.connects
        await channel.start(ctx)

        async def up() -> bool:
            return self.fake.connects > connects and bool(channel.status()["connected"])

        await async_wait_until(up, timeout=20, what="long connection up")

    async def stop(self) -> None:
        await self.channel.stop()
        await self.fake.stop()

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        channel = self.channel
        assert isinstance(channel, LarkChannel)
        if platform_id in self.event_of:
            event = self.fake.events[self.event_of[platform_id]]
            await self.fake.redeliver(event.event_id)
        else:
            message_id = await self.fake.user_message(conversation, sender, text)
            event = self.fake.event_for(message_id)
            self.event_of[platform_id] = event.event_id
        answers = len(event.ack_times) + event.nacks

        async def answered() -> bool:
            return len(event.ack_times) + event.nacks > answers

        await async_wait_until(answered, timeout=10, what=f"answer to {platform_id}")
        self.acks[platform_id] = list(event.ack_times)

    def sent(self) -> list[str]:
        return self.fake.post_texts()

    def sent_files(self) -> list[tuple[str, bytes]]:
        return [
            (str(u.get("file_name", u["key"])), self.fake.resources[u["key"]])
            for u in self.fake.uploads
        ]

    def fail_deliveries(self, error_class: ErrorClass | None) -> None:
        self.fake.stall_seconds = 3
        self.fake.always_fail = {
            None: None,
            ErrorClass.PERMANENT: "not_in_chat",
            ErrorClass.TRANSIENT: "429",
            ErrorClass.UNKNOWN: "reset",
        }[error_class]


class TestLarkContract(ChannelContract):
    conversation = DM
    sender = ALICE

    @pytest.fixture
    def harness(self, tmp_path: Path) -> LarkHarness:
        return LarkHarness(tmp_path)
