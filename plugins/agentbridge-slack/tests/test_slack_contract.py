"""The core's channel contract suite, run against the real SDK and the fake Slack."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentbridge.plugin.protocols import ChannelContext, ErrorClass
from agentbridge.testing import async_wait_until
from agentbridge.testing.contract import ChannelContract, HarnessBase
from slack_helpers import ALICE, DM, write_secret

from agentbridge_slack import SlackChannel, parse_settings
from agentbridge_slack.testing import APP_TOKEN, BOT_TOKEN, FakeSlack


class SlackHarness(HarnessBase):
    """An ack is the Socket Mode response carrying the envelope id."""

    can_fail = True

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeSlack()
        self.files = {
            "bot_token_file": str(write_secret(tmp_path / "bot", BOT_TOKEN)),
            "app_token_file": str(write_secret(tmp_path / "app", APP_TOKEN)),
        }
        self.envelope_of: dict[str, str] = {}
        super().__init__(SlackChannel(env={}))

    async def start(self, ctx: ChannelContext) -> None:
        await self.fake.start()
        assert isinstance(self.channel, SlackChannel)
        self.channel.settings = parse_settings(
            dict(self.files, allowed_users=[ALICE], base_url=self.fake.base_url, request_timeout=1)
        )
        await self.channel.start(ctx)
        channel = self.channel

        async def up() -> bool:
            return channel.connections > 0

        await async_wait_until(up, what="connected")

    async def stop(self) -> None:
        await self.channel.stop()
        await self.fake.stop()

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        assert isinstance(self.channel, SlackChannel)
        if platform_id in self.envelope_of:
            env = self.fake.envelopes[self.envelope_of[platform_id]]
            self.fake.redeliver(env.envelope_id)
        else:
            self.fake.user_message(conversation, sender, text)
            env = list(self.fake.envelopes.values())[-1]
            self.envelope_of[platform_id] = env.envelope_id
        acks, failures = len(env.ack_times), self.channel.ingest_failures
        channel = self.channel

        async def answered() -> bool:
            return len(env.ack_times) > acks or channel.ingest_failures > failures

        await async_wait_until(answered, timeout=10, what=f"answer to {platform_id}")
        self.acks[platform_id] = list(env.ack_times)

    def sent(self) -> list[str]:
        return [p["text"] for p in self.fake.posted]

    def sent_files(self) -> list[tuple[str, bytes]]:
        return [
            (f["name"], data)
            for up in self.fake.uploaded
            for f, data in zip(up["files"], up["data"], strict=True)
        ]

    def fail_deliveries(self, error_class: ErrorClass | None) -> None:
        self.fake.stall_seconds = 3
        self.fake.always_fail = {
            None: None,
            ErrorClass.PERMANENT: "channel_not_found",
            ErrorClass.TRANSIENT: "ratelimited",
            ErrorClass.UNKNOWN: "reset",
        }[error_class]


class TestSlackContract(ChannelContract):
    conversation = DM
    sender = ALICE

    @pytest.fixture
    def harness(self, tmp_path: Path) -> SlackHarness:
        return SlackHarness(tmp_path)
