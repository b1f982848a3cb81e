"""The outbox relay against a real ledger and a channel whose platform fails on demand.

The channel here stands in for an outside platform (a chat API): it records what "arrived" and
raises what a platform would. Everything else is the real relay and the real ledger.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay, chunk_text, classify
from agentbridge.ledger.migrations import MIGRATIONS, SCHEMA_VERSION, _split
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    ChannelContext,
    ChannelLimits,
    DeliveryError,
    ErrorClass,
    Receipt,
)
from agentbridge.testing import async_wait_until


class Platform:
    """What the platform received, and the failures it will answer with next."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.failures: list[BaseException] = []
        self.fail_on_part: dict[int, BaseException] = {}


class FlakyChannel:
    name = "flaky"
    limits = ChannelLimits(max_message_length=10)

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.calls = 0

    async def start(self, ctx: ChannelContext) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, item: OutboxItem) -> str | None:
        self.calls += 1
        if self.platform.failures:
            raise self.platform.failures.pop(0)
        part = len(self.platform.received)
        if part in self.platform.fail_on_part:
            raise self.platform.fail_on_part.pop(part)
        assert len(item.text) <= self.limits.max_message_length
        self.platform.received.append(item.text)
        return f"p{part}"

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        return ErrorClass.PERMANENT if isinstance(exc, PermissionError) else None

    async def receipt(self, receipt: Receipt) -> None: ...


FAST = OutboxConfig(backoff=(0.05, 0.1), max_retries=3, ttl_seconds=60, drain_budget_seconds=5)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "l.db") as led:
        yield led


async def run_relay(
    ledger: Ledger, channel: FlakyChannel, config: OutboxConfig = FAST
) -> tuple[OutboxRelay, asyncio.Task[None]]:
    relay = OutboxRelay(ledger, {channel.name: channel}, config)
    ledger.on_change(lambda kind, _id: relay.poke() if kind == "outbox" else None)
    return relay, asyncio.create_task(relay.run())


async def state_of(ledger: Ledger, outbox_id: int) -> str:
    return str((await ledger.get_reply(outbox_id)).state)


async def test_long_reply_is_chunked_and_a_retry_resumes_after_sent_parts(
    ledger: Ledger,
) -> None:
    platform = Platform()
    platform.fail_on_part[2] = ConnectionRefusedError("platform down")
    channel = FlakyChannel(platform)
    _relay, task = await run_relay(ledger, channel)
    try:
        item = await ledger.enqueue_reply("flaky", "c", "aaaa bbbb cccc dddd eeee ffff", "k1")
        await async_wait_until(lambda: _is(ledger, item.id, "sent"), timeout=10)
        assert "".join(platform.received).replace(" ", "") == "aaaabbbbccccddddeeeeffff"
        assert all(len(p) <= 10 for p in platform.received)
        assert len(platform.received) == len(set(platform.received))  # no part twice
        done = await ledger.get_reply(item.id)
        assert done.attempts == 2 and done.parts_sent == len(platform.received)
        assert done.platform_message_id == "p0"
    finally:
        task.cancel()


async def _is(ledger: Ledger, outbox_id: int, state: str) -> bool:
    return await state_of(ledger, outbox_id) == state


async def test_retry_after_is_honoured_and_permanent_errors_stop(ledger: Ledger) -> None:
    platform = Platform()
    platform.failures.append(DeliveryError("429 slow down", ErrorClass.TRANSIENT, retry_after=0.3))
    channel = FlakyChannel(platform)
    _relay, task = await run_relay(ledger, channel)
    try:
        item = await ledger.enqueue_reply("flaky", "c", "hello", "k1")

        async def retried() -> OutboxItem | None:
            row = await ledger.get_reply(item.id)
            return row if row.attempts == 1 and row.state == "pending" else None

        row = await async_wait_until(retried, timeout=5)
        assert 0.2 < row.scheduled_at - row.updated_at < 0.4  # retry_after, not the schedule
        await async_wait_until(lambda: _is(ledger, item.id, "sent"), timeout=5)

        platform.failures.append(PermissionError("bot was blocked by the user"))
        second = await ledger.enqueue_reply("flaky", "c", "again", "k2")
        await async_wait_until(lambda: _is(ledger, second.id, "failed"), timeout=5)
        assert (await ledger.get_reply(second.id)).attempts == 1  # never retried
    finally:
        task.cancel()


async def test_retry_cap_then_failed(ledger: Ledger) -> None:
    platform = Platform()
    platform.failures.extend(ConnectionRefusedError("network down") for _ in range(10))
    channel = FlakyChannel(platform)
    _relay, task = await run_relay(ledger, channel)
    try:
        item = await ledger.enqueue_reply("flaky", "c", "hello", "k1")
        await async_wait_until(lambda: _is(ledger, item.id, "failed"), timeout=10)
        row = await ledger.get_reply(item.id)
        assert row.attempts == FAST.max_retries and "gave up" in (row.last_error or "")
        assert channel.calls == FAST.max_retries
    finally:
        task.cancel()


async def test_unknown_after_a_crash_is_never_resent(ledger: Ledger) -> None:
    item = await ledger.enqueue_reply("flaky", "c", "hello", "k1")
    reserved = await ledger.claim_due_reply()
    assert reserved is not None and reserved.id == item.id  # "the bridge died while sending"
    platform = Platform()
    channel = FlakyChannel(platform)
    _relay, task = await run_relay(ledger, channel)
    try:
        await async_wait_until(lambda: _is(ledger, item.id, "unknown"), timeout=5)
        other = await ledger.enqueue_reply("flaky", "c", "later", "k2")
        await async_wait_until(lambda: _is(ledger, other.id, "sent"), timeout=5)
        assert platform.received == ["later"]
        await ledger.retry_reply(item.id)  # a human checked: it never arrived
        await async_wait_until(lambda: _is(ledger, item.id, "sent"), timeout=5)
        assert platform.received == ["later", "hello"]
    finally:
        task.cancel()


async def test_missing_channel_fails_the_row(ledger: Ledger) -> None:
    channel = FlakyChannel(Platform())
    _relay, task = await run_relay(ledger, channel)
    try:
        item = await ledger.enqueue_reply("gone", "c", "hello", "k1")
        await async_wait_until(lambda: _is(ledger, item.id, "failed"), timeout=5)
        assert "no channel" in ((await ledger.get_reply(item.id)).last_error or "")
    finally:
        task.cancel()


def test_chunking_and_default_classification() -> None:
    text = "word " * 50
    parts = chunk_text(text, 23)
    assert all(len(p) <= 23 for p in parts) and "".join(parts).split() == text.split()
    assert chunk_text("x" * 50, 20) == ["x" * 20, "x" * 20, "x" * 10]
    assert classify(RuntimeError("Forbidden: bot was kicked"), None, None)[0] == "permanent"
    # at most once: only proof that nothing was sent makes an error retryable
    assert classify(ConnectionRefusedError(), None, None)[0] == "transient"
    assert classify(socket.gaierror(-2, "Name or service not known"), None, None)[0] == "transient"
    assert classify(DeliveryError("429", ErrorClass.TRANSIENT), None, None)[0] == "transient"
    assert classify(RuntimeError("timeout"), None, None)[0] == "unknown"
    assert classify(TimeoutError(), None, None)[0] == "unknown"
    assert classify(ConnectionResetError(), None, None)[0] == "unknown"
    assert classify(DeliveryError("who knows"), None, None)[0] == "unknown"  # the default


async def test_v1_ledger_migrates_forward_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _split(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO outbox (channel, conversation, text, text_hash, idem_key, state,"
        " scheduled_at, expires_at, created_at, updated_at)"
        " VALUES ('local', 'c', 'kept', 'h', 'k', 'pending', 0, 9e9, 0, 0)"
    )
    conn.close()
    async with await Ledger.open(path) as ledger:
        rows = await ledger.list_replies()
        assert [(r.text, r.parts_sent) for r in rows] == [("kept", 0)]
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION >= 2
