"""Where an ingest commits (the loop thread or the database thread) never changes what an ack
means: the row is on disk with the configured ``synchronous``, the loop never waits for another
connection's write lock, and checkpoints keep the WAL bounded. Real files, real connections.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from agentbridge.ledger.checkpoint import CHECKPOINT_EVERY
from agentbridge.ledger.ingest import LONE_YIELD_EVERY
from agentbridge.ledger.rows import MULTI_MAX
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import Message


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


async def _warm(led: Ledger, n: int = 3) -> None:
    """Commit on the loop thread whenever the lock is free, however slow this disk is now."""
    led.inline_commit_max = math.inf
    for i in range(n):
        await led.ingest("warm", "c", "u", f"w{i}", key=f"w{i}")
    assert led._inline_commits > 0


@pytest.mark.parametrize(("mode", "level"), [("full", 2), ("normal", 1)])
async def test_both_connections_commit_with_the_configured_durability(
    tmp_path: Path, mode: str, level: int
) -> None:
    async with await Ledger.open(tmp_path / "l.db", synchronous=mode) as led:
        await _warm(led)
        assert led._inline is not None
        thread_level = await led._read(lambda conn: _pragma(conn, "synchronous"))
        assert _pragma(led._inline, "synchronous") == thread_level == level
        if sys.platform == "darwin" and mode == "full":
            assert _pragma(led._inline, "fullfsync") == 1


async def test_every_ack_of_a_group_commit_is_already_committed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as led:
        await _warm(led)
        other = sqlite3.connect(path)  # another connection sees only committed rows
        seen: list[bool] = []

        async def producer(p: int) -> None:
            for i in range(40):
                r = await led.ingest("tg", f"c{p}", "u", f"{p}/{i}", key=f"{p}/{i}")
                row = other.execute("SELECT id FROM messages WHERE id = ?", (r.message.id,))
                seen.append(row.fetchone() is not None)

        await asyncio.gather(*(producer(p) for p in range(8)))
        other.close()
    assert len(seen) == 320 and all(seen)


async def test_a_held_write_lock_never_blocks_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as led:
        await _warm(led)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's writer, say
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        ingest = asyncio.create_task(led.ingest("tg", "c", "u", "waits for the lock", key="x"))
        start = time.monotonic()
        while time.monotonic() - start < 0.3:
            await asyncio.sleep(0.01)
        assert not ingest.done(), "the ingest cannot commit while the lock is held"
        assert ticks >= 10, f"the event loop stalled: {ticks} ticks in 0.3 s"
        holder.execute("COMMIT")
        result = await asyncio.wait_for(ingest, timeout=10)  # on the thread, after the lock
        stop.set()
        await ticking
        holder.close()
        assert result.created and (await led.get(result.message.id)).text == "waits for the lock"


async def test_commits_on_the_loop_thread_keep_the_wal_bounded(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    n = CHECKPOINT_EVERY * 12
    async with await Ledger.open(path) as led:
        await _warm(led)
        for i in range(n):
            await led.ingest("tg", f"c{i % 9}", "u", f"message {i}", key=f"k{i}")
        wal_pages = path.with_name(path.name + "-wal").stat().st_size // 4096
    # no checkpoint would leave ~7 pages per ingest; checkpoints recycle the WAL from its start
    assert wal_pages < n * 7 / 3, f"{wal_pages} WAL pages after {n} ingests"


async def test_a_large_group_commit_stores_each_row_as_sent(tmp_path: Path) -> None:
    # more rows than one multi-row statement takes, every field different per row
    n = 2 * MULTI_MAX + 5
    async with await Ledger.open(tmp_path / "l.db") as ledger:
        await _warm(ledger)  # the batch commits on the loop thread, as under load
        results = await asyncio.gather(
            *(
                ledger.ingest(
                    f"ch{i % 3}",
                    f"c{i}",
                    f"u{i}",
                    f"text {i}",
                    key=None if i % 4 == 0 else f"k{i}",
                    agent=f"a{i % 2}",
                    priority=i % 5,
                    meta={"i": i} if i % 3 else None,
                )
                for i in range(n)
            )
        )
        assert all(r.created for r in results)
        assert len({r.message.id for r in results}) == n
        assert len({r.message.created_at for r in results}) == 1  # one group commit
        for i, r in enumerate(results):
            m = r.message
            assert (m.channel, m.conversation, m.sender, m.text) == (
                f"ch{i % 3}",
                f"c{i}",
                f"u{i}",
                f"text {i}",
            )
            assert (m.agent, m.priority, m.meta) == (f"a{i % 2}", i % 5, {"i": i} if i % 3 else {})
            assert await ledger.get(m.id) == m
            # built without ``__init__``: still the very record ``__init__`` would make
            assert Message(**{f.name: getattr(m, f.name) for f in fields(Message)}) == m
        trail = await ledger.events_for(results[-1].message.id)
        assert [(e.kind, e.to_state, e.detail) for e in trail] == [
            ("transition", "queued", f"ingested from u{n - 1}")
        ]


async def test_a_sequential_producer_still_lets_the_loop_run(tmp_path: Path) -> None:
    # One task ingesting back to back commits at once (nobody can be waiting to share its
    # commit) but still yields at least every LONE_YIELD_EVERY: other tasks keep running.
    async with await Ledger.open(tmp_path / "l.db") as led:
        await _warm(led)
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        start = time.monotonic()
        for i in range(300):
            await led.ingest("tg", "c", "u", f"m{i}", key=f"m{i}")
        elapsed = time.monotonic() - start
        done = True
        await ticking
        assert led._lone_task is asyncio.current_task()  # it did take the shortcut
    # the ticker got a turn at least once per LONE_YIELD_EVERY (plus one commit) of ingesting
    assert ticks >= min(300, elapsed / (LONE_YIELD_EVERY + 0.01)), (ticks, elapsed)
