"""Keeping the WAL bounded while group commits run on the event loop's thread.

The loop's connection never checkpoints by itself (a checkpoint copies pages and fsyncs the
database file: milliseconds the loop must not stall for). Every ``CHECKPOINT_EVERY`` commits a
PASSIVE checkpoint runs on the database thread instead, *beside* the loop's commits: it copies
the WAL into the database while the loop goes on committing, so no ingest waits for it.

A checkpoint that ran beside commits leaves their frames behind, and SQLite recycles the WAL
from its start only once every frame was checkpointed. Those few frames (at most ``TAIL_MAX``
commits' worth) are checkpointed on the loop thread as soon as the background one ends: about
one fsync of the database file, the cost of one more inline commit, once per cycle of about
``CHECKPOINT_EVERY`` commits. A longer tail (a slow checkpoint) is left to the database thread:
the next group commit runs there and checkpoints right after it, while no writer of this
process appends. Either way the WAL starts over and its file stays near SQLite's default size.

Short, even cycles matter on ext4 and the like: a commit that extends the WAL file also has to
journal the new size (a third more per fsync here); one that overwrites a recycled WAL not.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import aiosqlite

from agentbridge.ledger.base import _on_db_thread

log = logging.getLogger("agentbridge.ledger")

#: loop-thread commits between two checkpoints (~7 WAL pages each: near SQLite's 1,000 pages)
CHECKPOINT_EVERY = 128
#: the most commits a checkpoint on the loop thread may have to copy (the tail of one cycle)
TAIL_MAX = 16


class WalKeeper:
    """When the WAL that the loop's commits append to is checkpointed, and where."""

    def __init__(self, db: aiosqlite.Connection, inline: sqlite3.Connection | None) -> None:
        self._db = db
        self._inline = inline
        self.commits = 0  #: loop-thread commits since the last checkpoint began
        self._running: asyncio.Future[None] | None = None
        #: the next group commit must run on the database thread and checkpoint after it
        self.restart_due = False

    def committed(self) -> None:
        """Count one commit on the loop thread; start a background checkpoint when due."""
        self.commits += 1
        if self.commits >= CHECKPOINT_EVERY and (self._running is None or self._running.done()):
            self.commits = 0
            conn = self._db._conn

            def run() -> None:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

            self._running = asyncio.ensure_future(_on_db_thread(self._db, run))
            self._running.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # the WAL only grows until the next one; commits are unharmed
            log.warning("WAL checkpoint failed: %s", exc)
        if self.commits == 0:
            return  # nothing was committed beside it: the next commit recycles the WAL
        if self.commits <= TAIL_MAX and self._tail_on_loop():
            self.commits = 0
            return
        self.restart_due = True

    def _tail_on_loop(self) -> bool:
        """Checkpoint the frames committed beside the background checkpoint, on the loop
        thread (between two commits); False if that did not finish (another checkpointer or
        a reader held frames)."""
        if self._inline is None:
            return False
        try:
            busy, frames, done = self._inline.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # closed, busy…: the database thread does it
            log.debug("WAL checkpoint on the loop thread failed: %s", exc)
            return False
        return bool(busy == 0 and frames == done)

    def after_commit_on_thread(self, conn: sqlite3.Connection, due: bool) -> None:
        """On the database thread, right after a group commit there: the checkpoint that
        lets the WAL start over, if ``due`` (read by the loop when it sent the commit)."""
        if due:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def restarted(self) -> None:
        """On the loop, after ``after_commit_on_thread`` checkpointed."""
        self.restart_due = False
        self.commits = 0

    async def close(self) -> None:
        """Wait for a running checkpoint (the connection closes after it)."""
        if self._running is not None:
            await asyncio.wait([self._running])
