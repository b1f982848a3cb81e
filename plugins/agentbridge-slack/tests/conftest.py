"""Fixtures: a real fake Slack server, a real ledger file, channels started against both."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing import async_wait_until

from agentbridge_slack import SlackChannel, parse_settings
from agentbridge_slack.testing import APP_TOKEN, BOT_TOKEN, FakeSlack

# the helpers module sits next to this file; make it importable under any --import-mode
sys.path.insert(0, str(Path(__file__).parent))
from slack_helpers import ALICE, Ingest, ledger_ingest, write_secret


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
def token_files(tmp_path: Path) -> dict[str, str]:
    return {
        "bot_token_file": str(write_secret(tmp_path / "bot.token", BOT_TOKEN)),
        "app_token_file": str(write_secret(tmp_path / "app.token", APP_TOKEN)),
    }


@pytest.fixture
async def start_channel(
    fake: FakeSlack, ledger: Ledger, token_files: dict[str, str], tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[SlackChannel]]]:
    """``await start_channel(ingest=None, **table_overrides)`` → a started, connected channel."""
    started: list[SlackChannel] = []

    async def start(ingest: Ingest | None = None, **table: Any) -> SlackChannel:
        config: dict[str, Any] = dict(token_files, allowed_users=[ALICE], base_url=fake.base_url)
        config.update(table)
        channel = SlackChannel(parse_settings(config), env={})
        ctx = ChannelContext(
            name="slack",
            config=config,
            ingest=ingest or ledger_ingest(ledger),
            state_dir=tmp_path / "state",
            ledger=ledger,
        )
        connects = fake.connects
        await channel.start(ctx)
        started.append(channel)

        async def connected() -> bool:
            return fake.connects > connects and channel.connections > 0

        await async_wait_until(connected, timeout=10, what="socket mode connected")
        return channel

    yield start
    for channel in started:
        await channel.stop()
