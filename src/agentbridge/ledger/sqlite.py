"""The durable ledger: messages, leases, outbox, audit trail (permission prompts: a mixin).
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
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from agentbridge.ledger.access import access_problem, open_problem
from agentbridge.ledger.asks import AskMixin
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
    insert_event,
    text_hash,
)
from agentbridge.ledger.ingest import IngestMixin, open_inline
from agentbridge.ledger.lease import LeaseMixin
from agentbridge.ledger.nodes_sqlite import NodesMixin
from agentbridge.ledger.outbox import OutboxMixin
from agentbridge.ledger.permissions import PermissionMixin
from agentbridge.ledger.read import ReadMixin
from agentbridge.ledger.replay import ReplayMixin
from agentbridge.ledger.requeue import RequeueMixin

log = logging.getLogger(__name__)


class Ledger(
    IngestMixin,
    ReadMixin,
    OutboxMixin,
    ReplayMixin,
    LeaseMixin,
    RequeueMixin,
    PermissionMixin,
    AskMixin,
    NodesMixin,
):
    """Async facade over one SQLite file. Open with ``await Ledger.open(path)``.

    Its methods live by job in the mixins: ingest, read, outbox, replay guard, lease (claim
    and fenced transitions), requeue (recovery and human moves), permission requests, over
    ``LedgerCore`` (the transaction runners, change notification); here: opening, closing.
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
        super().__init__(db, path, clock, max_attempts)
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
