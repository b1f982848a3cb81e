"""What every part of ``Ledger`` stands on: its connection, clock, change listeners and the
two ways a method reaches the database (one write transaction, one read snapshot).

The ledger's methods live by job in mixins (ingest, read, outbox, lease, requeue, replay);
each inherits this class, so each sees the same runners without restating them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from agentbridge.kinds import ChangeKind, ChangeListener
from agentbridge.ledger.base import _on_db_thread, _run_tx
from agentbridge.ledger.nodes import AgentFences

log = logging.getLogger("agentbridge.ledger.sqlite")
T = TypeVar("T")


class LedgerCore:
    """One SQLite connection (run on aiosqlite's thread) and who is told of its commits."""

    def __init__(
        self, db: aiosqlite.Connection, path: Path, clock: Callable[[], float], max_attempts: int
    ) -> None:
        self._db = db
        self.path = path
        self.clock = clock
        self.max_attempts = max_attempts
        self._listeners: list[ChangeListener] = []
        self.fences = AgentFences()  #: agent leases this store's writes present (nodes.py)

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
