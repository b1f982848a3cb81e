"""Fixtures: a fake Discord on 127.0.0.1, a real ledger file, channels started against both."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_discord import DiscordChannel, parse_settings
from agentbridge_discord.testing import FakeDiscord

# the helpers module sits next to this file; make it importable under any --import-mode
sys.path.insert(0, str(Path(__file__).parent))
from discord_helpers import ALICE, Ingest, ledger_ingest


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
def token_file(tmp_path: Path, fake: FakeDiscord) -> Path:
    path = tmp_path / "discord.token"
    path.write_text(fake.token + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture
async def start_channel(
    fake: FakeDiscord, ledger: Ledger, token_file: Path, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[DiscordChannel]]]:
    """``await start_channel(ingest=None, core_max_bytes=…, **table_overrides)`` → a started
    channel whose gateway session is up (READY seen); ``core_max_bytes`` is the core's
    ``[attachments] max_bytes``."""
    started: list[DiscordChannel] = []

    async def start(
        ingest: Ingest | None = None, core_max_bytes: int = 20 * 1024 * 1024, **table: Any
    ) -> DiscordChannel:
        from agentbridge.testing import async_wait_until

        config: dict[str, Any] = {
            "token_file": str(token_file),
            "allowed_users": [ALICE],
            "request_timeout": 2,
            **fake.settings_table(),
        }
        config.update(table)
        channel = DiscordChannel(parse_settings(config), env={})
        ctx = ChannelContext(
            name="discord",
            config=config,
            ingest=ingest or ledger_ingest(ledger),
            state_dir=tmp_path / "state",
            ledger=ledger,
            max_attachment_bytes=core_max_bytes,
        )
        sessions = channel.sessions
        await channel.start(ctx)
        started.append(channel)

        async def up() -> bool:
            return channel.sessions > sessions

        await async_wait_until(up, timeout=10, what="gateway READY")
        return channel

    yield start
    for channel in started:
        await channel.stop()
