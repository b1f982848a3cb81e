"""The channel contract suite run against our own channels: local and the HTTP API."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from agentbridge.channels.http_api import HttpApiChannel
from agentbridge.channels.local import LocalChannel
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing.contract import ChannelContract, HarnessBase


class LocalHarness(HarnessBase):
    """The local channel's inbound path is the CLI writing to the ledger; its "ack" is the
    id the CLI prints, which it can only print after ``ingest`` returned."""

    ctx: ChannelContext

    async def start(self, ctx: ChannelContext) -> None:
        self.ctx = ctx
        await super().start(ctx)

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        await self.ctx.ingest(conversation, sender, text, key=platform_id)
        self.record_ack(platform_id)


class HttpHarness(HarnessBase):
    """A script posting to the API: a 202 is the ack, anything else means "not received"."""

    channel: HttpApiChannel

    def __init__(self, token_file: Path) -> None:
        # a relay speaking for many people: the contract suite sends as several senders
        tokens = [{"token_file": str(token_file), "senders": ["*"]}]
        super().__init__(HttpApiChannel({"port": 0, "tokens": tokens}))
        self.token_file = token_file

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        token = self.token_file.read_text().strip()
        url = f"http://127.0.0.1:{self.channel.port}/v1/messages"
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url,
                json={"text": text, "conversation": conversation, "sender": sender},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": platform_id},
            ) as response,
        ):
            await response.read()
            if response.status == 202:
                self.record_ack(platform_id)


class TestLocalContract(ChannelContract):
    @pytest.fixture
    def harness(self) -> LocalHarness:
        return LocalHarness(LocalChannel())


class TestHttpApiContract(ChannelContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> HttpHarness:
        return HttpHarness(tmp_path / "token")
