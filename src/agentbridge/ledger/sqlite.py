"""The durable ledger: every inbound message, its lease, the outbox and the audit trail.

Each public method is one SQLite transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) run as a single
function on aiosqlite's connection thread, so a transition and its event row commit together
and cost one thread hop. A method returns only after its commit: the return of ``ingest`` is
the ingress ack a channel may pass on to its platform. Group commits of ``ingest`` may run on
the loop thread instead while the disk is fast (see ``agentbridge.ledger.ingest``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from agentbridge.kinds import ChangeKind, ChangeListener
from agentbridge.ledger.access import access_problem, open_problem
from agentbridge.ledger.base import (
    IdempotencyConflict,
    IllegalTransition,
    IngestResult,
    LedgerError,
    NewMessage,
    NotFound,
    StaleLease,
    _configure,
    _on_db_thread,
    _run_tx,
    insert_event,
    text_hash,
)
from agentbridge.ledger.ingest import IngestMixin, open_inline
from agentbridge.ledger.lease import LeaseMixin
from agentbridge.ledger.outbox import OutboxMixin
from agentbridge.ledger.read import ReadMixin
from agentbridge.ledger.replay import ReplayMixin
from agentbridge.ledger.requeue import RequeueMixin

log = logging.getLogger(__name__)
T = TypeVar("T")


class Ledger(IngestMixin, ReadMixin, OutboxMixin, ReplayMixin, LeaseMixin, RequeueMixin):
    """Async facade over one SQLite file. Open with ``await Ledger.open(path)``.

    Its methods live by job in the mixins: ingest, read, outbox, replay guard, lease
    (claim and fenced transitions), requeue (recovery and human moves); here: opening,
    the transaction runners and change notification.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        inline: sqlite3.Connection | None = None,
    ) -> None:
        self._db = db
        self.path = path
        self.clock = clock
        self.max_attempts = max_attempts
        self._listeners: list[ChangeListener] = []
        self._init_ingest(inline)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        synchronous: str = "full",
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
    ) -> Ledger:
        """Open (creating and migrating if needed) the ledger at ``path``."""
        path = Path(path)
        problem = access_problem(path)
        if problem is not None:
            raise LedgerError(problem)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(open_problem(path, exc)) from exc
        db.row_factory = sqlite3.Row
        try:
            await _on_db_thread(db, lambda: _configure(db._conn, synchronous, str(path)))
            inline = open_inline(str(path), synchronous)  # group commits while fsync is fast
        except sqlite3.Error as exc:  # read-only file or directory, not a database, locked…
            await db.close()
            raise LedgerError(open_problem(path, exc)) from exc
        except BaseException:
            await db.close()
            raise
        # the -wal file holds the newest messages' text too: same privacy as the database
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                if file.exists():
                    file.chmod(0o600)
            except OSError:  # pragma: no cover - e.g. a read-only mount
                log.warning("could not set mode 0600 on %s", file)
        return cls(db, path, clock=clock, max_attempts=max_attempts, inline=inline)

    async def close(self) -> None:
        """Close the connections once queued ingests have committed (their callers get acks)."""
        await self._close_ingest()
        await self._db.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(kind, id)`` after every committed change; returns an unsubscribe.

        ``kind`` is a ``ChangeKind`` (message or outbox). This is how the dispatcher and relay
        wake at once on an ingest instead of polling.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:  # idempotent: shutdown paths may call it twice
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, kind: str, ids: Iterable[int]) -> None:
        change = ChangeKind(kind)  # the mixins say "message" / "outbox"
        for ident in ids:
            for listener in list(self._listeners):
                try:
                    listener(change, ident)
                except Exception:  # a listener's bug must not undo a committed write
                    log.exception("ledger listener failed")

    async def _tx(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run ``fn(conn, now)`` in one write transaction on the connection thread."""
        now = self.clock()
        return await _on_db_thread(self._db, lambda: _run_tx(self._db._conn, fn, now))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` on the connection thread, in one snapshot.

        A deferred transaction makes multi-statement reads (``stats``) consistent with each
        other even while another process writes.
        """

        def run() -> T:
            conn = self._db._conn
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return await _on_db_thread(self._db, run)

    # ------------------------------------------------------------------ audit

    async def note(self, message_id: int, actor: str, kind: str, detail: str) -> None:
        """Record an observation (a receipt, a warning) in a message's audit trail."""
        await self._tx(
            lambda conn, now: insert_event(
                conn, now, actor, kind, message_id=message_id, detail=detail
            )
        )


__all__ = [
    "IdempotencyConflict",
    "IllegalTransition",
    "IngestResult",
    "Ledger",
    "LedgerError",
    "NewMessage",
    "NotFound",
    "StaleLease",
    "insert_event",
    "text_hash",
]
