"""The ingest half of the ledger: group commit, and where each commit runs.

A commit's fsync (~0.25 ms on an SSD) costs less than handing the transaction to the database
thread and back (two cross-CPU wake-ups, ~0.15 ms on a VM), so a lone ingest spent a third of
its time in the hop. While commits are fast (a moving average of measured ingest transactions
under ``INLINE_COMMIT_MAX``), the group commit runs on the event loop's thread, on a second
connection whose busy timeout is 0: if any other connection holds the write lock it falls back
to the database thread at once, so the loop never waits for a lock. A slow or stalled disk (or
macOS ``F_FULLFSYNC``) lifts the average above the bound and commits go back to the thread.
Durability is the same on both paths: the same ``synchronous`` setting, and the caller's ack
follows the COMMIT. WAL checkpoints never run on the loop (see ``ledger_checkpoint``).

The caller whose ingest finds no commit coming leads the next one: it yields once (producers
ready in this loop iteration join the batch), commits in its own task and returns its own
result with no wake-up; the others' futures are settled after the COMMIT. A task that was
alone in its last commit too (a sequential producer: a poller, a bulk import) skips that yield,
since nobody can be waiting to join, but still yields every ``LONE_YIELD_EVERY``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import Any

from agentbridge.ledger.base import (
    IdempotencyConflict,
    IngestResult,
    NewMessage,
    _Conflict,
    _encode_meta,
    _on_db_thread,
    _record_conflict,
    _run_tx,
    _settle,
)
from agentbridge.ledger.checkpoint import WalKeeper
from agentbridge.ledger.core import LedgerCore
from agentbridge.ledger.rows import IngestRow, _ingest_rows, ingest_row, storable_row

log = logging.getLogger("agentbridge.ledger.sqlite")

#: one queued single-message ingest: its row and the caller's future
_PendingIngest = tuple[IngestRow, "asyncio.Future[IngestResult | IdempotencyConflict]"]

#: a sequential producer (one task, alone in each commit) still yields this often (seconds)
LONE_YIELD_EVERY = 0.001
#: commit on the loop thread only while ingest transactions average less than this (seconds)
INLINE_COMMIT_MAX = 0.002


def open_inline(path: str, synchronous: str) -> sqlite3.Connection:
    """The loop thread's connection: the same durability PRAGMAs as the database thread's,
    never waits for a lock, never checkpoints by itself (the database thread's connection
    has already set WAL mode and the schema, and validated ``synchronous``)."""
    sync = synchronous.upper()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA synchronous = {sync}")
        if sys.platform == "darwin" and sync == "FULL":
            conn.execute("PRAGMA fullfsync = ON")  # as in ``_configure``
    except BaseException:
        conn.close()
        raise
    return conn


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class IngestMixin(LedgerCore):
    """Ingest methods of ``Ledger`` (kept apart so each file has one job)."""

    _pending_ingests: list[_PendingIngest]
    _ingest_flusher: asyncio.Task[None] | None
    #: a flush of ``_pending_ingests`` is coming (a leader's, or one scheduled with call_soon)
    _flush_scheduled: bool
    _inline: sqlite3.Connection | None
    _commit_avg: float
    _inline_commits: int
    _wal: WalKeeper
    #: the task that committed alone last time, and until when it may skip the yield
    _lone_task: asyncio.Task[Any] | None
    _lone_until: float
    _last_batch: int  #: ingests in the last group commit
    #: the bound on the measured commit time for committing on the loop thread (seconds)
    inline_commit_max: float = INLINE_COMMIT_MAX

    def _init_ingest(self, inline: sqlite3.Connection | None) -> None:
        self._pending_ingests = []
        self._ingest_flusher = None
        self._flush_scheduled = False
        self._inline = inline
        self._commit_avg = math.inf  # unknown: the first commits go to the thread and measure
        self._inline_commits = 0
        self._wal = WalKeeper(self._db, inline)
        self._lone_task = None
        self._lone_until = 0.0
        self._last_batch = 0

    async def _close_ingest(self) -> None:
        """Wait until queued ingests committed (their callers get acks) and a running
        checkpoint ended; close the loop's connection."""
        while self._pending_ingests or self._flush_scheduled or self._flushing():
            if self._ingest_flusher is not None and self._flushing():
                await asyncio.wait([self._ingest_flusher])
            else:
                await asyncio.sleep(0)  # the scheduled flush runs in the next loop iteration
        await self._wal.close()
        if self._inline is not None:
            self._inline.close()
            self._inline = None

    async def ingest(
        self,
        channel: str,
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        agent: str = "default",
        priority: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Durably store one inbound message; idempotent on ``(channel, key)``.

        Raises ``IdempotencyConflict`` (and records it) when the key exists with other text.
        """
        # Encoded here, in the caller's task: a bad ``meta`` must fail this caller only, not
        # the group commit it would otherwise share with other producers.
        row = storable_row(
            channel, conversation, sender, key, text, agent, priority, _encode_meta(meta)
        )
        future: asyncio.Future[IngestResult | IdempotencyConflict]
        future = asyncio.get_running_loop().create_future()
        self._pending_ingests.append((row, future))
        flusher = self._ingest_flusher
        if not self._flush_scheduled and (flusher is None or flusher.done()):
            self._flush_scheduled = True
            task = asyncio.current_task()
            if task is not self._lone_task or time.monotonic() > self._lone_until:
                # This caller leads the next group commit. Not at once: producers that are
                # ready in this loop iteration append first and share it.
                try:
                    await asyncio.sleep(0)
                except BaseException:  # cancelled: the others' commit (and this row's) runs
                    asyncio.get_running_loop().call_soon(self._flush_soon)
                    raise
                self._lone_until = time.monotonic() + LONE_YIELD_EVERY
            self._flush_soon()
            # the same task alone in its last commit too: a sequential producer, whose next
            # ingest commits at once (no other producer can be waiting to join it)
            self._lone_task = task if self._last_batch == 1 else None
        result = future.result() if future.done() else await future
        if isinstance(result, IdempotencyConflict):
            raise result
        return result

    def _flushing(self) -> bool:
        return self._ingest_flusher is not None and not self._ingest_flusher.done()

    def _flush_soon(self) -> None:
        """Commit what is pending on the loop thread if that is allowed and the write lock is
        free (callers get their acks without a thread hop), else start the flush task."""
        self._flush_scheduled = False
        batch = self._pending_ingests
        if not batch or self._flushing():
            return  # the running flush takes them
        results = self._try_inline([row for row, _ in batch])
        if results is None:
            self._ingest_flusher = asyncio.create_task(self._flush_ingests())
            return
        self._pending_ingests = []
        self._settle_batch(batch, results)

    def _settle_batch(
        self,
        batch: list[_PendingIngest],
        results: Sequence[IngestResult | IdempotencyConflict | Exception],
    ) -> None:
        """Hand each caller its result (after the commit) and wake the listeners."""
        self._last_batch = len(batch)
        only = results[0] if len(results) == 1 else None
        if only.__class__ is IngestResult:  # a lone ingest that created or found its row
            future = batch[0][1]
            if not future.done():
                future.set_result(only)
            if only.created:
                self._notify("message", (only.message.id,))
            return
        created: list[int] = []
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)
            if result.__class__ is IngestResult and result.created:
                created.append(result.message.id)
        if created:
            self._notify("message", created)

    async def _flush_ingests(self) -> None:
        """Group commit: ingests that arrive while a commit is in flight share the next one.

        Each caller still returns only after the transaction holding its row committed. If a
        shared transaction fails, each of its ingests is retried in a transaction of its own,
        so one caller's failure never becomes another's.
        """
        batch: list[_PendingIngest] = []
        try:
            while self._pending_ingests:
                batch, self._pending_ingests = self._pending_ingests, []
                rows = [row for row, _ in batch]
                try:
                    results: list[IngestResult | IdempotencyConflict | Exception] = [
                        *await self._ingest_tx(rows)
                    ]
                except Exception as exc:
                    # the file itself failed (locked past busy_timeout, disk full…): retrying
                    # each ingest alone would only multiply the wait; everyone gets the error
                    if len(batch) == 1 or isinstance(exc, sqlite3.OperationalError):
                        for _, future in batch:
                            _settle(future, exc)
                        batch = []
                        continue
                    results = []
                    for row in rows:
                        try:
                            results.extend(await self._ingest_tx([row]))
                        except Exception as one_exc:
                            results.append(one_exc)
                done, batch = batch, []
                self._settle_batch(done, results)
                if self._pending_ingests:
                    await asyncio.sleep(0)  # let this batch's callers run before the next fsync
        except BaseException:
            # cancelled (loop shutdown): no caller may wait forever on a flush that is gone
            for _, future in [*batch, *self._pending_ingests]:
                future.cancel()
            self._pending_ingests = []
            raise

    def _try_inline(self, rows: Sequence[IngestRow]) -> list[IngestResult | _Conflict] | None:
        """Commit ``rows`` on the loop thread, or None (nothing written) when commits are
        slow, the WAL's restart is due, another connection holds the write lock, or it failed
        (the database thread then retries and reports the error to each caller it
        concerns)."""
        inline = self._inline
        if inline is None or self._commit_avg >= self.inline_commit_max or self._wal.restart_due:
            return None
        start = time.perf_counter()
        try:
            inline.execute("BEGIN IMMEDIATE")  # busy_timeout 0: never waits
            out = _ingest_rows(inline, self.clock(), rows)
            inline.execute("COMMIT")
        except BaseException as exc:
            # SQLite may already have rolled back (e.g. SQLITE_FULL): a second ROLLBACK would
            # raise and hide the real error
            if inline.in_transaction:
                inline.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            if not (isinstance(exc, sqlite3.OperationalError) and _busy(exc)):
                log.debug("group commit on the loop thread failed; retrying on the db thread")
            return None
        self._measured(time.perf_counter() - start)
        self._inline_commits += 1
        self._wal.committed()
        return out

    async def _ingest_tx(self, rows: Sequence[IngestRow]) -> list[IngestResult | _Conflict]:
        """One transaction for ``rows``: on the loop thread while commits are fast and the
        write lock is free, else on the database thread. Returns after the COMMIT."""
        inline = self._try_inline(rows)
        if inline is not None:
            return inline

        def run(conn: sqlite3.Connection, now: float) -> list[IngestResult | _Conflict]:
            return _ingest_rows(conn, now, rows)

        wal, restart = self._wal, self._wal.restart_due
        now = self.clock()

        def on_thread() -> tuple[list[IngestResult | _Conflict], float]:
            conn = self._db._conn
            start = time.perf_counter()
            out = _run_tx(conn, run, now)
            elapsed = time.perf_counter() - start
            wal.after_commit_on_thread(conn, restart)
            return out, elapsed

        out, elapsed = await _on_db_thread(self._db, on_thread)
        if restart:
            wal.restarted()
        self._measured(elapsed)
        return out

    def _measured(self, seconds: float) -> None:
        avg = self._commit_avg
        self._commit_avg = seconds if math.isinf(avg) else 0.8 * avg + 0.2 * seconds

    async def ingest_many(self, items: Sequence[NewMessage]) -> list[IngestResult]:
        """Ingest a batch in one transaction (one fsync); a conflict raises and rolls back all.

        The conflict itself is still recorded (in a transaction of its own), as for ``ingest``.
        """
        rows = [ingest_row(item) for item in items]

        def run(conn: sqlite3.Connection, now: float) -> list[IngestResult]:
            out: list[IngestResult] = []
            for result in _ingest_rows(conn, now, rows, record_conflicts=False):
                if isinstance(result, _Conflict):
                    raise result
                out.append(result)
            return out

        try:
            results = await self._tx(run)
        except _Conflict as conflict:
            found = conflict
        else:
            self._notify("message", [r.message.id for r in results if r.created])
            return results
        await self._tx(lambda conn, now: _record_conflict(conn, now, found))
        raise IdempotencyConflict(str(found))
