"""Fixtures: a fake Lark on 127.0.0.1, a real ledger file, channels started against both."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing import async_wait_until

from agentbridge_lark import LarkChannel, parse_settings
from agentbridge_lark.testing import APP_ID, APP_SECRET, FakeLark

# the helpers module sits next to this file; make it importable under any --import-mode
sys.path.insert(0, str(Path(__file__).parent))
from lark_helpers import ALICE, Ingest, ledger_ingest, write_secret


@pytest.fixture
async def fake() -> AsyncIterator[FakeLark]:
    async with FakeLark() as server:
        yield server


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "lark.secret", APP_SECRET)


def table_for(fake: FakeLark, secret_file: Path, **table: Any) -> dict[str, Any]:
    """A ``[channels.lark]`` table pointed at ``fake``."""
    config: dict[str, Any] = {
        "app_id": APP_ID,
        "app_secret_file": str(secret_file),
        "allowed_users": [ALICE],
        "domain": fake.base_url,
        "request_timeout": 2,
    }
    config.update(table)
    return config


@pytest.fixture
async def start_channel(
    fake: FakeLark, ledger: Ledger, secret_file: Path, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[LarkChannel]]]:
    """``await start_channel(ingest=None, **table_overrides)`` → a started channel whose long
    connection is up."""
    started: list[LarkChannel] = []

    async def start(ingest: Ingest | None = None, **table: Any) -> LarkChannel:
        config = table_for(fake, secret_file, **table)
        channel = LarkChannel(parse_settings(config), env={})
        ctx = ChannelContext(
            name="lark",
            config=config,
            ingest=ingest or ledger_ingest(ledger),
            state_dir=tmp_path / "state",
            ledger=ledger,
        )
        connects = fake.connects
        await channel.start(ctx)
        started.append(channel)

        async def up() -> bool:
            return fake.connects > connects and channel.status()["connected"]

        await async_wait_until(up, timeout=20, what="long connection up")
        return channel

    yield start
    for channel in started:
        await channel.stop()
