"""Idempotency survives retention: a pruned key leaves a tombstone that ingest still honours.

Real SQLite files in ``tmp_path``; a fake clock moves time past retention.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentbridge.config import ConfigError, parse_config
from agentbridge.ledger.sqlite import IdempotencyConflict, Ledger, NewMessage
from agentbridge.states import MessageState
from agentbridge.testing.bridge import complete_next

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(tmp_path: Path, clock: Clock) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db", clock=clock)
    try:
        yield led
    finally:
        await led.close()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


async def finish(ledger: Ledger) -> None:
    """The agent answers and the reply reaches the platform: the message is prunable."""
    await complete_next(ledger, "done")
    item = await ledger.claim_due_reply()
    assert item is not None
    await ledger.mark_sent(item.id, "p1")


async def pruned_key(ledger: Ledger, clock: Clock, key: str = "tg-42", text: str = "hi") -> int:
    """Ingest ``key``, complete it, let retention prune it; return its message id."""
    first = await ledger.ingest("tg", "c", "u", text, key=key, agent="demo")
    await finish(ledger)
    clock.t += 31 * DAY
    # a newer message: the newest row is never pruned (ids must not be reused)
    await ledger.ingest("tg", "other", "u", "newer", agent="idle")
    assert await ledger.prune(30 * DAY, 90 * DAY) == (1, 1)
    assert [m.id for m in await ledger.list_messages(channel="tg")] != [first.message.id]
    return first.message.id


async def test_late_duplicate_after_prune_is_not_ingested_again(
    ledger: Ledger, clock: Clock
) -> None:
    original = await pruned_key(ledger, clock)
    before = await ledger.list_messages()
    again = await ledger.ingest("tg", "c", "u", "hi", key="tg-42", agent="demo")
    assert again.created is False
    assert again.message.id == original and again.message.state == MessageState.COMPLETED
    assert "pruned" in (again.message.reason or "")
    assert await ledger.list_messages() == before  # no new row
    [result] = await ledger.ingest_many([NewMessage("tg", "c", "u", "hi", key="tg-42")])
    assert result.created is False and result.message.id == original
    assert await ledger.list_messages() == before


async def test_pruned_key_with_other_text_is_a_recorded_conflict(
    ledger: Ledger, clock: Clock, tmp_path: Path
) -> None:
    original = await pruned_key(ledger, clock)
    with pytest.raises(IdempotencyConflict, match=rf"message {original} \(since pruned\)"):
        await ledger.ingest("tg", "c", "u", "something else", key="tg-42", agent="demo")
    with pytest.raises(IdempotencyConflict):
        await ledger.ingest_many([NewMessage("tg", "c", "u", "something else", key="tg-42")])
    events = rows(
        tmp_path / "ledger.db",
        "SELECT message_id, detail FROM events WHERE kind = 'idempotency_conflict'",
    )
    assert len(events) == 2
    assert all(mid is None and f"message {original}, pruned" in d for mid, d in events)
    assert [m.text for m in await ledger.list_messages(channel="tg")] == ["newer"]
    clock.t += 31 * DAY  # the conflict's audit rows age out like any other
    await ledger.prune(30 * DAY)
    assert rows(tmp_path / "ledger.db", "SELECT * FROM events WHERE message_id IS NULL") == []


async def test_tombstone_is_compact_and_expires(
    ledger: Ledger, clock: Clock, tmp_path: Path
) -> None:
    original = await pruned_key(ledger, clock)
    [(channel, key, digest, mid, state)] = rows(
        tmp_path / "ledger.db",
        "SELECT channel, idem_key, text_hash, message_id, final_state FROM idempotency_tombstones",
    )
    assert (channel, key, mid, state) == ("tg", "tg-42", original, "completed")
    assert len(str(digest)) == 64
    clock.t += 91 * DAY
    await ledger.prune(30 * DAY, 90 * DAY)
    assert rows(tmp_path / "ledger.db", "SELECT * FROM idempotency_tombstones") == []
    # past the tombstone window the key is new again (documented: longer than any redelivery)
    assert (await ledger.ingest("tg", "c", "u", "hi", key="tg-42", agent="demo")).created


async def test_keyless_and_unfinished_messages_leave_no_tombstone(
    ledger: Ledger, clock: Clock, tmp_path: Path
) -> None:
    await ledger.ingest("tg", "c", "u", "no key", agent="demo")
    await finish(ledger)
    await ledger.ingest("tg", "c", "u", "still queued", key="q-1", agent="idle")
    clock.t += 31 * DAY
    await ledger.ingest("tg", "c", "u", "newest", agent="idle")
    assert await ledger.prune(30 * DAY) == (1, 1)
    assert rows(tmp_path / "ledger.db", "SELECT * FROM idempotency_tombstones") == []


async def test_newest_message_is_never_pruned_so_ids_are_not_reused(
    ledger: Ledger, clock: Clock
) -> None:
    only = await ledger.ingest("tg", "c", "u", "alone", key="k", agent="demo")
    await finish(ledger)
    clock.t += 31 * DAY
    assert await ledger.prune(30 * DAY) == (0, 1)  # the sent reply goes, the row stays
    nxt = await ledger.ingest("tg", "c", "u", "next", agent="idle")
    assert nxt.message.id > only.message.id


def test_tombstone_days_config() -> None:
    assert parse_config({}).ledger.tombstone_days == 90.0
    assert parse_config({"ledger": {"tombstone_days": 7}}).ledger.tombstone_days == 7.0
    with pytest.raises(ConfigError, match=r"ledger\.tombstone_days must be > 0"):
        parse_config({"ledger": {"tombstone_days": 0}})
