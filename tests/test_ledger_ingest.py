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
from pathlib import Path

import pytest

from agentbridge.ledger.ingest import CHECKPOINT_EVERY
from agentbridge.ledger.sqlite import Ledger


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
