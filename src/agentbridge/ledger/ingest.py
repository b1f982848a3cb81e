"""The ingest half of the ledger: group commit, and where each commit runs.

A commit's fsync (~0.25 ms on an SSD) costs less than handing the transaction to the database
thread and back (two cross-CPU wake-ups, ~0.15 ms on a VM), so a lone ingest spent a third of
its time in the hop. While commits are fast (a moving average of measured ingest transactions
under ``INLINE_COMMIT_MAX``), the group commit runs on the event loop's thread, on a second
connection whose busy timeout is 0: if any other connection holds the write lock it falls back
to the database thread at once, so the loop never waits for a lock. A slow or stalled disk (or
macOS ``F_FULLFSYNC``) lifts the average above the bound and commits go back to the thread.
Durability is the same on both paths: the same ``synchronous`` setting, and the caller's ack
follows the COMMIT. WAL checkpoints never run on the loop: every ``CHECKPOINT_EVERY`` inline
commits one group commit goes to the database thread, which checkpoints after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from agentbridge.ledger.base import (
    IdempotencyConflict,
    IngestResult,
    NewMessage,
    _Conflict,
    _encode_meta,
    _in_tx,
    _ingest_rows,
    _on_db_thread,
    _record_conflict,
    _run_tx,
    _settle,
)
from agentbridge.sanitize import SURROGATES, clean_text

T = TypeVar("T")
log = logging.getLogger("agentbridge.ledger.sqlite")


#: one queued single-message ingest: the message, its meta already encoded, the caller's future
def storable(item: NewMessage) -> NewMessage:
    """Every ingest path's text fields as valid Unicode (lone surrogates → U+FFFD).

    Applied here so that no channel can forget it: SQLite cannot store a lone surrogate, and the
    ``UnicodeEncodeError`` would otherwise reach the sender as a crash (or a 5xx, forever).
    """
    fields = (item.channel, item.conversation, item.sender, item.text, item.key or "", item.agent)
    if not any(SURROGATES.search(f) for f in fields):
        return item  # the common case: nothing to copy
    key = None if item.key is None else clean_text(item.key)
    return replace(
        item,
        channel=clean_text(item.channel),
        conversation=clean_text(item.conversation),
        sender=clean_text(item.sender),
        text=clean_text(item.text),
        key=key,
        agent=clean_text(item.agent),
    )


_PendingIngest = tuple[
    NewMessage, "str | None", "asyncio.Future[IngestResult | IdempotencyConflict]"
]
_Pair = tuple[NewMessage, "str | None"]

#: commit on the loop thread only while ingest transactions average less than this (seconds)
INLINE_COMMIT_MAX = 0.002
#: inline commits between two checkpoints (~7 WAL pages each: near SQLite's 1,000-page default)
CHECKPOINT_EVERY = 128


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


class IngestMixin:
    """Ingest methods of ``Ledger`` (kept apart so each file has one job)."""

    _pending_ingests: list[_PendingIngest]
    _ingest_flusher: asyncio.Task[None] | None
    _flush_scheduled: bool
    _inline: sqlite3.Connection | None
    _commit_avg: float
    _inline_commits: int
    #: the bound on the measured commit time for committing on the loop thread (seconds)
    inline_commit_max: float = INLINE_COMMIT_MAX

    if TYPE_CHECKING:
        clock: Callable[[], float]
        _db: aiosqlite.Connection

        async def _tx(self, fn: Callable[[sqlite3.Connection, float], T]) -> T: ...
        def _notify(self, kind: str, ids: Iterable[int]) -> None: ...

    def _init_ingest(self, inline: sqlite3.Connection | None) -> None:
        self._pending_ingests = []
        self._ingest_flusher = None
        self._flush_scheduled = False
        self._inline = inline
        self._commit_avg = math.inf  # unknown: the first commits go to the thread and measure
        self._inline_commits = 0

    async def _close_ingest(self) -> None:
        """Wait until queued ingests committed (their callers get acks); close the loop's
        connection."""
        while self._pending_ingests or self._flush_scheduled or self._flushing():
            if self._ingest_flusher is not None and self._flushing():
                await asyncio.wait([self._ingest_flusher])
            else:
                await asyncio.sleep(0)  # the scheduled flush runs in the next loop iteration
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
        item = storable(NewMessage(channel, conversation, sender, text, key, agent, priority, meta))
        # Encode here, in the caller's task: a bad ``meta`` must fail this caller only, not
        # the group commit it would otherwise share with other producers.
        meta_json = _encode_meta(meta)
        future: asyncio.Future[IngestResult | IdempotencyConflict] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending_ingests.append((item, meta_json, future))
        if not self._flush_scheduled and not self._flushing():
            # not now: producers that are ready in this loop iteration append first and
            # share the commit
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)
        result = await future
        if isinstance(result, IdempotencyConflict):
            raise result
        return result

    def _flushing(self) -> bool:
        return self._ingest_flusher is not None and not self._ingest_flusher.done()

    def _flush_soon(self) -> None:
        """Commit what is pending on the loop thread if that is allowed and the write lock is
        free (callers get their acks without a thread hop), else start the flush task."""
        self._flush_scheduled = False
        if self._flushing() or not self._pending_ingests:
            return  # the running flush takes them
        batch = self._pending_ingests
        results = self._try_inline([(item, meta_json) for item, meta_json, _ in batch])
        if results is None:
            self._ingest_flusher = asyncio.create_task(self._flush_ingests())
            return
        self._pending_ingests = []
        self._settle_batch(batch, list(results))

    def _settle_batch(
        self,
        batch: list[_PendingIngest],
        results: list[IngestResult | IdempotencyConflict | Exception],
    ) -> None:
        """Hand each caller its result (after the commit) and wake the listeners."""
        created: list[int] = []
        for (_, _, future), result in zip(batch, results, strict=True):
            _settle(future, result)
            if isinstance(result, IngestResult) and result.created:
                created.append(result.message.id)
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
                pairs = [(item, meta_json) for item, meta_json, _ in batch]
                try:
                    results: list[IngestResult | IdempotencyConflict | Exception] = [
                        *await self._ingest_tx(pairs)
                    ]
                except Exception as exc:
                    # the file itself failed (locked past busy_timeout, disk full…): retrying
                    # each ingest alone would only multiply the wait; everyone gets the error
                    if len(batch) == 1 or isinstance(exc, sqlite3.OperationalError):
                        for _, _, future in batch:
                            _settle(future, exc)
                        batch = []
                        continue
                    results = []
                    for pair in pairs:
                        try:
                            results.extend(await self._ingest_tx([pair]))
                        except Exception as one_exc:
                            results.append(one_exc)
                done, batch = batch, []
                self._settle_batch(done, results)
                if self._pending_ingests:
                    await asyncio.sleep(0)  # let this batch's callers run before the next fsync
        except BaseException:
            # cancelled (loop shutdown): no caller may wait forever on a flush that is gone
            for _, _, future in [*batch, *self._pending_ingests]:
                future.cancel()
            self._pending_ingests = []
            raise

    def _try_inline(self, pairs: Sequence[_Pair]) -> list[IngestResult | _Conflict] | None:
        """Commit ``pairs`` on the loop thread, or None (nothing written) when commits are
        slow, a checkpoint is due, another connection holds the write lock, or it failed (the
        database thread then retries and reports the error to each caller it concerns)."""
        inline = self._inline
        if (
            inline is None
            or self._commit_avg >= self.inline_commit_max
            or self._inline_commits >= CHECKPOINT_EVERY
        ):
            return None
        start = time.perf_counter()
        try:
            inline.execute("BEGIN IMMEDIATE")  # busy_timeout 0: never waits
            out = _in_tx(inline, lambda conn, now: _ingest_rows(conn, now, pairs), self.clock())
        except Exception as exc:  # rolled back (or never begun)
            if not (isinstance(exc, sqlite3.OperationalError) and _busy(exc)):
                log.debug("group commit on the loop thread failed; retrying on the db thread")
            return None
        self._inline_commits += 1
        self._measured(time.perf_counter() - start)
        return out

    async def _ingest_tx(self, pairs: Sequence[_Pair]) -> list[IngestResult | _Conflict]:
        """One transaction for ``pairs``: on the loop thread while commits are fast and the
        write lock is free, else on the database thread. Returns after the COMMIT."""
        inline = self._try_inline(pairs)
        if inline is not None:
            return inline

        def rows(conn: sqlite3.Connection, now: float) -> list[IngestResult | _Conflict]:
            return _ingest_rows(conn, now, pairs)

        checkpoint = self._inline_commits >= CHECKPOINT_EVERY
        now = self.clock()

        def on_thread() -> tuple[list[IngestResult | _Conflict], float]:
            conn = self._db._conn
            start = time.perf_counter()
            out = _run_tx(conn, rows, now)
            elapsed = time.perf_counter() - start
            if checkpoint:  # the loop's commits appended to the WAL: fold it back now
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return out, elapsed

        out, elapsed = await _on_db_thread(self._db, on_thread)
        if checkpoint:
            self._inline_commits = 0
        self._measured(elapsed)
        return out

    def _measured(self, seconds: float) -> None:
        avg = self._commit_avg
        self._commit_avg = seconds if math.isinf(avg) else 0.8 * avg + 0.2 * seconds

    async def ingest_many(self, items: Sequence[NewMessage]) -> list[IngestResult]:
        """Ingest a batch in one transaction (one fsync); a conflict raises and rolls back all.

        The conflict itself is still recorded (in a transaction of its own), as for ``ingest``.
        """
        pairs = [(storable(item), _encode_meta(item.meta)) for item in items]

        def run(conn: sqlite3.Connection, now: float) -> list[IngestResult]:
            out: list[IngestResult] = []
            for result in _ingest_rows(conn, now, pairs, record_conflicts=False):
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
