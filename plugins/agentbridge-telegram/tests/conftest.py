"""Fixtures: a real fake Bot API server, a real ledger file, channels started against both."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_telegram import TelegramChannel, parse_settings
from agentbridge_telegram.testing import FakeBotApi

# the helpers module sits next to this file; make it importable under any --import-mode
sys.path.insert(0, str(Path(__file__).parent))
from telegram_helpers import ALICE, Ingest, ledger_ingest


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        yield api


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
def token_file(tmp_path: Path, fake: FakeBotApi) -> Path:
    path = tmp_path / "telegram.token"
    path.write_text(fake.token + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture
async def start_channel(
    fake: FakeBotApi, ledger: Ledger, token_file: Path, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[TelegramChannel]]]:
    """``await start_channel(ingest=None, **table_overrides)`` → a started channel."""
    started: list[TelegramChannel] = []

    async def start(
        ingest: Ingest | None = None, core_max_bytes: int = 20 * 1024 * 1024, **table: Any
    ) -> TelegramChannel:
        config: dict[str, Any] = {
            "token_file": str(token_file),
            "allowed_users": [ALICE],
            "base_url": fake.base_url,
            "poll_timeout": 5,
        }
        config.update(table)
        channel = TelegramChannel(parse_settings(config), env={})
        ctx = ChannelContext(
            name="telegram",
            config=config,
            ingest=ingest or ledger_ingest(ledger),
            state_dir=tmp_path,
            ledger=ledger,
            max_attachment_bytes=core_max_bytes,  # the core's [attachments] max_bytes
        )
        await channel.start(ctx)
        started.append(channel)
        return channel

    yield start
    for channel in started:
        await channel.stop()
