"""The channel against the core's contract suite, over the real discord.py and the fake Discord.

The platform's "ack" for Discord is the stored cursor (the id catch-up resumes from): the
harness records it through the cursor store's listener.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from agentbridge.plugin.protocols import ChannelContext, ErrorClass
from agentbridge.testing import async_wait_until
from agentbridge.testing.contract import ChannelContract, HarnessBase
from discord_helpers import ALICE, DM

from agentbridge_discord import DiscordChannel, parse_settings
from agentbridge_discord.testing import FakeDiscord


class DiscordHarness(HarnessBase):
    can_fail = True

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeDiscord()
        token = tmp_path / "token"
        token.write_text(self.fake.token)
        os.chmod(token, 0o600)
        self.token_file = token
        self.ids: dict[str, int] = {}
        super().__init__(DiscordChannel(env={}))

    async def start(self, ctx: ChannelContext) -> None:
        await self.fake.start()
        channel = self.channel
        assert isinstance(channel, DiscordChannel)
        channel.settings = parse_settings(
            {
                "token_file": str(self.token_file),
                "allowed_users": [ALICE],
                "request_timeout": 2,
                **self.fake.settings_table(),
            }
        )
        await channel.start(ctx)
        assert channel.cursors is not None
        channel.cursors.listeners.append(self._acked)

        async def up() -> bool:
            return channel.sessions > 0

        await async_wait_until(up, timeout=10, what="gateway READY")

    def _acked(self, channel_id: int, message_id: int) -> None:
        for platform_id, mid in self.ids.items():
            if mid == message_id:
                self.record_ack(platform_id)

    async def stop(self) -> None:
        await self.channel.stop()
        await self.fake.stop()

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        channel = self.channel
        assert isinstance(channel, DiscordChannel)
        acks = len(self.ack_times(platform_id))
        failures = channel.ingest_failures
        if platform_id in self.ids:  # a redelivery: the same message dispatched again
            payload = self.fake.message(int(conversation), int(sender), text)
            payload = self.fake.message(
                int(conversation), int(sender), text, message_id=self.ids[platform_id]
            )
            await self.fake.dispatch("MESSAGE_CREATE", payload)
        else:
            self.ids[platform_id] = await self.fake.post(int(conversation), int(sender), text)

        async def answered() -> bool:
            return len(self.ack_times(platform_id)) > acks or channel.ingest_failures > failures

        await async_wait_until(answered, timeout=10, what=f"answer to {platform_id}")

    def sent(self) -> list[str]:
        return self.fake.reply_texts()

    def sent_files(self) -> list[tuple[str, bytes]]:
        return [upload for s in self.fake.sent for upload in s.files]

    def fail_deliveries(self, error_class: ErrorClass | None) -> None:
        self.fake.always_fail = {
            None: None,
            ErrorClass.PERMANENT: "404",  # Unknown Channel
            ErrorClass.TRANSIENT: "429_long",  # a 429 longer than discord.py waits itself
            ErrorClass.UNKNOWN: "reset",  # created, then the connection dropped: answer lost
        }[error_class]


class TestDiscordContract(ChannelContract):
    conversation = str(DM)
    sender = str(ALICE)

    @pytest.fixture
    def harness(self, tmp_path: Path) -> DiscordHarness:
        return DiscordHarness(tmp_path)
