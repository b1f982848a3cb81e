"""The scheduler channel against a real ledger, driven by an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentbridge.channels.scheduler import (
    RETRY_DELAY,
    STATE_FILE,
    SchedulerChannel,
    fire_key,
    parse_schedules,
    register_channels,
)
from agentbridge.config import ConfigError, parse_config
from agentbridge.models import Message
from agentbridge.plugin.protocols import Channel
from agentbridge.testing import async_wait_until
from agentbridge.testing.bridge import ContractBridge, contract_bridge


def at(text: str) -> float:
    """Unix time of an ISO time in UTC, e.g. ``at("2026-11-23T09:00")``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class FakeClock:
    """Wall-clock time that only moves when a test says so; ``sleep`` waits for that.

    ``asleep`` turns False on every move and True again once the sleeper has seen the move
    and gone back to sleep: then the loop has done whatever the move made due.
    """

    def __init__(self, now: float) -> None:
        self.now = now
        self.asleep = False
        self.naps: list[float] = []
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        self.naps.append(seconds)
        while self.now < until:
            self._moved.clear()
            self.asleep = True
            await self._moved.wait()

    def set(self, now: float) -> None:
        self.now = now
        self.asleep = False
        self._moved.set()


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[ContractBridge]:
    async with contract_bridge("scheduler", tmp_path) as bridge:
        yield bridge


def make(clock: FakeClock, **tables: dict[str, Any]) -> SchedulerChannel:
    return SchedulerChannel(parse_schedules(tables), clock=clock, sleep=clock.sleep)


async def rows(bridge: ContractBridge) -> list[Message]:
    return await bridge.ledger.list_messages(channel="scheduler")


async def keys(bridge: ContractBridge) -> list[str | None]:
    return [m.platform_id for m in await rows(bridge)]


async def wait_rows(bridge: ContractBridge, count: int) -> list[Message]:
    async def enough() -> list[Message] | None:
        found = await rows(bridge)
        return found if len(found) >= count else None

    return await async_wait_until(enough, timeout=10, what=f"{count} scheduled messages")


async def settled(clock: FakeClock) -> None:
    """The loop is back asleep (so it has seen the last clock move)."""
    await async_wait_until(lambda: asyncio.sleep(0, clock.asleep), what="loop asleep")


HOURLY = {"cron": "0 * * * *", "text": "hourly check", "timezone": "UTC"}


async def test_every_fires_on_the_interval(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T09:00:10"))
    channel = make(clock, tick={"every": "1m", "text": "tick"})
    await channel.start(bridge.ctx)
    await settled(clock)
    assert await rows(bridge) == []  # first start: nothing was due before
    clock.set(at("2026-11-23T09:01:00"))
    await wait_rows(bridge, 1)
    await settled(clock)
    clock.set(at("2026-11-23T09:02:00.5"))
    found = await wait_rows(bridge, 2)
    await channel.stop()
    assert [m.platform_id for m in found] == [
        "tick@2026-11-23T09:01:00Z",
        "tick@2026-11-23T09:02:00Z",
    ]
    assert all(
        (m.text, m.conversation, m.sender) == ("tick", "schedule:tick", "schedule:tick")
        for m in found
    )


async def test_cron_in_a_time_zone(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T07:59:30"))
    channel = make(
        clock, standup={"cron": "0 9 * * 1-5", "text": "standup", "timezone": "Europe/Berlin"}
    )
    await channel.start(bridge.ctx)
    await settled(clock)
    clock.set(at("2026-11-23T08:00:00"))  # 09:00 in Berlin (UTC+1 in November)
    (msg,) = await wait_rows(bridge, 1)
    await channel.stop()
    assert msg.platform_id == "standup@2026-11-23T08:00:00Z"


async def test_restart_never_double_fires(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T08:59:50"))
    first = make(clock, hourly=dict(HOURLY, missed="once"))
    await first.start(bridge.ctx)
    await settled(clock)
    clock.set(at("2026-11-23T09:00:00"))
    await wait_rows(bridge, 1)
    await first.stop()
    for lose_state in (False, True):  # the state file is a cache; the ledger is the record
        if lose_state:
            (bridge.ctx.state_dir / STATE_FILE).unlink()
        again = make(clock, hourly=dict(HOURLY, missed="once"))
        await again.start(bridge.ctx)
        await settled(clock)
        await again.stop()
    assert await keys(bridge) == ["hourly@2026-11-23T09:00:00Z"]


async def test_missed_skip_fires_only_future_times(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T08:59:50"))
    before = make(clock, hourly=HOURLY)
    await before.start(bridge.ctx)
    await settled(clock)
    clock.set(at("2026-11-23T09:00:00"))
    await wait_rows(bridge, 1)
    await before.stop()

    clock.set(at("2026-11-23T12:20:00"))  # down through 10:00, 11:00 and 12:00
    after = make(clock, hourly=HOURLY)
    await after.start(bridge.ctx)
    await settled(clock)
    assert len(await rows(bridge)) == 1
    clock.set(at("2026-11-23T13:00:01"))
    await wait_rows(bridge, 2)
    await after.stop()
    assert await keys(bridge) == ["hourly@2026-11-23T09:00:00Z", "hourly@2026-11-23T13:00:00Z"]


async def test_missed_once_fires_one_catch_up(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T08:59:50"))
    table = dict(HOURLY, missed="once")
    before = make(clock, hourly=table)
    await before.start(bridge.ctx)
    await settled(clock)
    clock.set(at("2026-11-23T09:00:00"))
    await wait_rows(bridge, 1)
    await before.stop()

    clock.set(at("2026-11-23T12:20:00"))
    after = make(clock, hourly=table)
    await after.start(bridge.ctx)
    await wait_rows(bridge, 2)
    await settled(clock)
    await after.stop()
    assert await keys(bridge) == ["hourly@2026-11-23T09:00:00Z", "hourly@2026-11-23T12:00:00Z"]


async def test_host_sleep_while_running_follows_the_missed_policy(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T08:59:50"))
    channel = make(clock, skip=HOURLY, once=dict(HOURLY, missed="once"))
    await channel.start(bridge.ctx)
    await settled(clock)
    clock.set(at("2026-11-23T11:30:00"))  # the laptop slept through 09:00, 10:00, 11:00
    await wait_rows(bridge, 1)
    await settled(clock)
    await channel.stop()
    assert await keys(bridge) == ["once@2026-11-23T11:00:00Z"]


async def test_agent_and_conversation_are_passed_on(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T09:00:59"))
    channel = make(clock, r={"every": "1m", "text": "x", "agent": "other", "conversation": "ops"})
    await channel.start(bridge.ctx)
    await settled(clock)
    clock.set(at("2026-11-23T09:01:00"))
    (msg,) = await wait_rows(bridge, 1)
    await channel.stop()
    await channel.stop()  # twice is harmless
    assert (msg.agent, msg.conversation) == ("other", "ops")
    assert msg.meta == {"schedule": "r", "fire_time": at("2026-11-23T09:01:00")}


async def test_failed_firing_is_retried(bridge: ContractBridge) -> None:
    clock = FakeClock(at("2026-11-23T08:59:50"))
    channel = make(clock, hourly=dict(HOURLY, missed="once"))
    await channel.start(bridge.ctx)
    await settled(clock)
    bridge.fail_ingest = True  # the ledger is unavailable at 09:00
    clock.set(at("2026-11-23T09:00:00"))
    await settled(clock)
    assert await rows(bridge) == [] and clock.naps[-1] == RETRY_DELAY  # no busy retry loop
    bridge.fail_ingest = False
    clock.set(at("2026-11-23T09:00:06"))  # the retry pass after the failure
    (msg,) = await wait_rows(bridge, 1)
    await channel.stop()
    assert msg.platform_id == "hourly@2026-11-23T09:00:00Z"


def test_fire_key_is_utc_iso() -> None:
    assert fire_key("daily", at("2026-11-23T09:00")) == "daily@2026-11-23T09:00:00Z"


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"cron": "61 * * * *", "text": "t"}, "schedules.x.cron must be 5 cron fields"),
        ({"cron": "0 * * * * *", "text": "t"}, "schedules.x.cron must be 5 cron fields"),
        ({"cron": "0 * * * *", "every": "1m", "text": "t"}, "exactly one of cron or every"),
        ({"text": "t"}, "exactly one of cron or every"),
        ({"every": "5 minutes", "text": "t"}, "schedules.x.every must look like"),
        ({"every": "0s", "text": "t"}, "schedules.x.every must look like"),
        ({"every": "1m"}, "schedules.x.text is required"),
        ({"every": "1m", "text": ""}, "schedules.x.text must be a non-empty string"),
        ({"every": "1m", "text": "t", "missed": "twice"}, "schedules.x.missed must be"),
        ({"every": "1m", "text": "t", "agent": "ghost"}, "schedules.x.agent names no"),
        ({"every": "1m", "text": "t", "timezone": "Mars/Base"}, "schedules.x.timezone"),
        ({"every": "1m", "text": "t", "when": 1}, "unknown key schedules.x.'when'"),
    ],
)
def test_bad_schedule_config_names_the_key(table: dict[str, Any], needle: str) -> None:
    config = parse_config({"schedules": {"x": table}})
    with pytest.raises(ConfigError) as info:
        register_channels(lambda c: None, config)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_registered_only_with_schedules() -> None:
    found: list[Channel] = []
    register_channels(found.append, parse_config({}))
    assert found == []
    register_channels(
        found.append, parse_config({"schedules": {"a": {"every": "2h", "text": "t"}}})
    )
    (channel,) = found
    assert isinstance(channel, SchedulerChannel) and channel.schedules[0].every == 7200
