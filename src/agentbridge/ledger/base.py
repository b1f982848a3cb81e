"""The ledger's building blocks: its errors and records, and the functions that run on the
database thread inside one transaction (refusals, requeues, ingest rows, configuration).

Kept apart from ``ledger.py`` so that file reads as the public API; nothing here awaits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, NoReturn, TypeVar

import aiosqlite

from agentbridge.ledger.migrations import migrate
from agentbridge.ledger.records import message_from_row
from agentbridge.models import Message
from agentbridge.models import NewMessage as NewMessage
from agentbridge.states import MessageState

log = logging.getLogger("agentbridge.ledger.sqlite")
T = TypeVar("T")

IN_FLIGHT_SQL = "('claimed', 'submitted', 'accepted')"


class LedgerError(Exception):
    """Base of the ledger's own errors."""


class IdempotencyConflict(LedgerError):
    """The same idempotency key arrived again with different content."""


class StaleLease(LedgerError):
    """A transition presented a fencing version that is no longer current (recorded)."""


class IllegalTransition(LedgerError):
    """The state machine does not allow this move (recorded)."""


class NotFound(LedgerError):
    """No row with that id."""


class _CommitThenRaise(Exception):
    """Raised inside a transaction to keep what it wrote (a refusal's audit row), then raise.

    Refusals must survive in the audit trail, but the caller must still see the error:
    ``_tx`` commits and re-raises ``error`` instead of rolling back.
    """

    def __init__(self, error: LedgerError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` returns: the stored message, and whether this call created it."""

    message: Message
    created: bool


def text_hash(text: str) -> str:
    """Canonical content hash used by idempotency checks."""
    return sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def insert_event(
    conn: sqlite3.Connection,
    now: float,
    actor: str,
    kind: str,
    *,
    message_id: int | None = None,
    outbox_id: int | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    attempt: int | None = None,
    detail: str = "",
) -> None:
    """Append one audit-trail row (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO events (message_id, outbox_id, at, actor, kind, from_state, to_state,"
        " attempt, detail) VALUES (?,?,?,?,?,?,?,?,?)",
        (message_id, outbox_id, now, actor, kind, from_state, to_state, attempt, detail),
    )


# ---------------------------------------------------------------------- helpers (db thread)


def where(*tests: tuple[str, object], always: str = "") -> tuple[str, list[object]]:
    """A ``WHERE`` clause of the tests whose value is not None (``("agent = ?", agent)``),
    ANDed with ``always``; "" when nothing is tested. Values only ever travel as parameters."""
    clauses = [always] if always else []
    params: list[object] = []
    for test, value in tests:
        if value is not None:
            clauses.append(test)
            params.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def transition_event(
    conn: sqlite3.Connection,
    now: float,
    actor: str,
    current: Message,
    to: str,
    detail: str,
    *,
    attempt: int | None = None,
) -> None:
    """The audit row of ``current`` (the row before the move) going to state ``to``."""
    insert_event(
        conn,
        now,
        actor,
        "transition",
        message_id=current.id,
        from_state=current.state,
        to_state=to,
        attempt=current.attempt if attempt is None else attempt,
        detail=detail,
    )


async def _on_db_thread(db: aiosqlite.Connection, fn: Callable[[], T]) -> T:
    """Run ``fn`` on aiosqlite's connection thread: one hop for a whole transaction.

    aiosqlite's public calls cost one hop per statement; a transition is several statements.
    ``_execute`` has been aiosqlite's dispatch primitive since its first release.
    """
    return await db._execute(fn)  # type: ignore[no-untyped-call,no-any-return]


def _run_tx(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection, float], T], now: float
) -> T:
    """``BEGIN IMMEDIATE`` → ``fn`` → ``COMMIT``; roll back on error, commit refusals."""
    conn.execute("BEGIN IMMEDIATE")
    return _in_tx(conn, fn, now)


def _in_tx(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection, float], T], now: float) -> T:
    """``fn`` → ``COMMIT`` in the transaction the caller began; roll back on error."""
    try:
        result = fn(conn, now)
    except _CommitThenRaise as signal:
        conn.execute("COMMIT")
        raise signal.error from None
    except BaseException:
        # SQLite may already have rolled back (e.g. SQLITE_FULL): a second ROLLBACK would
        # raise and hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _set_wal(conn: sqlite3.Connection, timeout: float = 10.0) -> str:
    """Switch to WAL, retrying while another connection is switching the same fresh file.

    Changing the journal mode answers SQLITE_BUSY at once (the busy handler is not used),
    so two processes opening a new ledger together would otherwise fail at random.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # on the connection thread, not the event loop
        delay = min(delay * 2, 0.05)


def _configure(conn: sqlite3.Connection, synchronous: str, path: str) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    mode = _set_wal(conn)
    if str(mode).lower() != "wal":
        raise LedgerError(f"ledger {path}: could not switch to WAL (got {mode})")
    sync = {"full": "FULL", "normal": "NORMAL"}.get(synchronous.lower())
    if sync is None:
        raise LedgerError(f"ledger: synchronous must be 'full' or 'normal', not {synchronous!r}")
    conn.execute(f"PRAGMA synchronous = {sync}")
    if sys.platform == "darwin" and sync == "FULL":
        conn.execute("PRAGMA fullfsync = ON")  # macOS fsync does not reach the platter without it
    migrate(conn, path)


def _rank(state: MessageState) -> int:
    order = [
        MessageState.QUEUED,
        MessageState.CLAIMED,
        MessageState.SUBMITTED,
        MessageState.ACCEPTED,
        MessageState.COMPLETED,
    ]
    return order.index(state) if state in order else 99


def _get(conn: sqlite3.Connection, message_id: int) -> Message:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise NotFound(f"no message {message_id}")
    return message_from_row(row)


def _refuse(
    conn: sqlite3.Connection,
    now: float,
    message_id: int,
    fence: int,
    what: str,
    current: Message | None,
) -> NoReturn:
    """Record a stale holder's refused transition, commit that record, and raise StaleLease."""
    current = current or _get(conn, message_id)
    if current.fence != fence:
        why = f"fence {fence} is stale (current {current.fence})"
    else:  # current fence, but the lease already ended (completed, failed…)
        why = f"fence {fence} holds no lease (message is {current.state})"
    insert_event(
        conn,
        now,
        "ledger",
        "refused",
        message_id=message_id,
        from_state=current.state,
        attempt=current.attempt,
        detail=f"{why}; refused {what}",
    )
    raise _CommitThenRaise(StaleLease(f"message {message_id}: {why}"))


def _illegal(
    conn: sqlite3.Connection,
    now: float,
    current: Message,
    to: MessageState,
    actor: str,
    why: str = "",
) -> NoReturn:
    """Record a move the state machine does not allow, commit that record, raise."""
    detail = f"illegal transition {current.state} -> {to}" + (f" ({why})" if why else "")
    insert_event(
        conn,
        now,
        actor,
        "refused",
        message_id=current.id,
        from_state=current.state,
        to_state=to,
        attempt=current.attempt,
        detail=detail,
    )
    raise _CommitThenRaise(IllegalTransition(f"message {current.id}: {detail}"))


def _requeue(
    conn: sqlite3.Connection,
    now: float,
    current: Message,
    actor: str,
    *,
    attempt: int,
    detail: str,
) -> Message:
    """Back to ``queued`` with no lease and a new fence (any old holder's fence is dead)."""
    row = conn.execute(
        "UPDATE messages SET state = 'queued', attempt = ?, fence = fence + 1, reason = NULL,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ? RETURNING *",
        (attempt, now, current.id),
    ).fetchone()
    transition_event(conn, now, actor, current, MessageState.QUEUED, detail, attempt=attempt)
    return message_from_row(row)


def _set_state(
    conn: sqlite3.Connection,
    now: float,
    current: Message,
    to: MessageState,
    actor: str,
    detail: str,
    *,
    reason: str | None = None,
    bump_fence: bool = False,
) -> Message:
    row = conn.execute(
        "UPDATE messages SET state = ?, reason = ?, updated_at = ?, lease_owner = NULL,"
        " lease_expires_at = NULL, fence = fence + ? WHERE id = ? RETURNING *",
        (to, reason, now, 1 if bump_fence else 0, current.id),
    ).fetchone()
    transition_event(conn, now, actor, current, to, detail)
    return message_from_row(row)


class _Conflict(IdempotencyConflict):
    """An idempotency conflict found inside a transaction, with what its event needs."""

    def __init__(self, item: NewMessage, message_id: int, *, pruned: bool = False) -> None:
        super().__init__(
            f"idempotency key {item.key!r} on channel {item.channel!r} was already used"
            f" for message {message_id}{' (since pruned)' if pruned else ''} with different text"
        )
        self.item = item
        self.message_id = message_id
        self.pruned = pruned


def _encode_meta(meta: dict[str, Any] | None) -> str | None:
    return json.dumps(meta) if meta else None


def _record_conflict(conn: sqlite3.Connection, now: float, conflict: _Conflict) -> None:
    insert_event(
        conn,
        now,
        conflict.item.channel,
        "idempotency_conflict",
        # a pruned message has no audit trail to join; prune reaps these by age (bury)
        message_id=None if conflict.pruned else conflict.message_id,
        detail=f"key {conflict.item.key!r} re-sent with different text"
        + (f" (message {conflict.message_id}, pruned)" if conflict.pruned else ""),
    )


def _settle(
    future: asyncio.Future[IngestResult | IdempotencyConflict],
    result: IngestResult | IdempotencyConflict | Exception,
) -> None:
    if future.done():  # the caller was cancelled; its row (if any) is committed regardless
        return
    if isinstance(result, IdempotencyConflict) or not isinstance(result, Exception):
        future.set_result(result)
    else:
        future.set_exception(result)
