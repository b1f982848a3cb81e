"""What runs inside one PostgreSQL transaction: audit rows, refusals, requeues, notifications.

The SQLite ledger's helpers of the same names (``ledger.base``), as coroutines on a cursor.
A refusal raises ``CommitThenRaise``: the transaction keeps the audit row and commits, then
the caller sees the ``LedgerError``. Every change also queues a ``pg_notify`` in the same
transaction: PostgreSQL delivers it to the other stores' listeners only if it commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn, cast

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from agentbridge.ledger.base import IllegalTransition, LedgerError, NotFound, StaleLease
from agentbridge.ledger.postgres.url import scrub, where
from agentbridge.ledger.records import message_from_row, outbox_from_row
from agentbridge.models import Message, OutboxItem
from agentbridge.states import MessageState

Cursor = AsyncCursor[DictRow]

#: the LISTEN/NOTIFY channel every store of one database shares
CHANNEL = "agentbridge_changes"
IN_FLIGHT_SQL = "('claimed', 'submitted', 'accepted')"
#: ids per notification (a payload must stay under PostgreSQL's 8000 bytes)
IDS_PER_NOTIFY = 400


def problem(url: str, exc: BaseException) -> str:
    """One line for a failed connection or statement: where, and the server's reason."""
    reason = scrub(" ".join(str(exc).split()), url)
    return f"ledger {where(url)}: {reason or type(exc).__name__}"


class CommitThenRaise(Exception):
    """Raised inside a transaction to commit what it wrote (a refusal's audit row), then
    raise ``error`` to the caller."""

    def __init__(self, error: LedgerError) -> None:
        super().__init__(str(error))
        self.error = error


def message(row: DictRow | None) -> Message:
    """The ``Message`` of a ``messages`` row (the records read rows by column name)."""
    assert row is not None
    return message_from_row(cast(Any, row))


def reply_item(row: DictRow | None) -> OutboxItem:
    """The ``OutboxItem`` of an ``outbox`` row."""
    assert row is not None
    return outbox_from_row(cast(Any, row))


async def insert_event(
    cur: Cursor,
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
    """Append one audit-trail row. The transaction gets its id before the row draws its
    own (``pg_current_xact_id`` first), so a reader of ``events_since`` that sees the row's
    id drawn also sees its transaction as in progress (``tail``)."""
    await cur.execute(
        "INSERT INTO events (message_id, outbox_id, at, actor, kind, from_state, to_state,"
        " attempt, detail) SELECT %s,%s,%s,%s,%s,%s,%s,%s,%s"
        " FROM (SELECT pg_current_xact_id()) AS xact",
        (message_id, outbox_id, now, actor, kind, from_state, to_state, attempt, detail),
    )


def payload(token: str, kind: str, ids: Iterable[int]) -> list[str]:
    """The notification payloads of a change: ``token|kind|id,id,…`` (chunked)."""
    texts = [str(i) for i in ids]
    return [
        f"{token}|{kind}|{','.join(texts[i : i + IDS_PER_NOTIFY])}"
        for i in range(0, len(texts), IDS_PER_NOTIFY)
    ]


async def notify(cur: Cursor, token: str, kind: str, ids: Iterable[int]) -> None:
    """Queue the notification of a change; PostgreSQL sends it at COMMIT."""
    for text in payload(token, kind, ids):
        await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, text))


async def get_locked(cur: Cursor, message_id: int) -> Message:
    """One message, row-locked until the transaction ends (fenced moves serialize on it)."""
    await cur.execute("SELECT * FROM messages WHERE id = %s FOR UPDATE", (message_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no message {message_id}")
    return message(row)


async def refuse(
    cur: Cursor, now: float, message_id: int, fence: int, what: str, current: Message | None
) -> NoReturn:
    """Record a stale holder's refused move, commit that record, raise ``StaleLease``."""
    current = current or await get_locked(cur, message_id)
    if current.fence != fence:
        why = f"fence {fence} is stale (current {current.fence})"
    else:
        why = f"fence {fence} holds no lease (message is {current.state})"
    await insert_event(
        cur,
        now,
        "ledger",
        "refused",
        message_id=message_id,
        from_state=current.state,
        attempt=current.attempt,
        detail=f"{why}; refused {what}",
    )
    raise CommitThenRaise(StaleLease(f"message {message_id}: {why}"))


async def illegal(
    cur: Cursor, now: float, current: Message, to: MessageState, actor: str, why: str = ""
) -> NoReturn:
    """Record a move the state machine does not allow, commit that record, raise."""
    detail = f"illegal transition {current.state} -> {to}" + (f" ({why})" if why else "")
    await insert_event(
        cur,
        now,
        actor,
        "refused",
        message_id=current.id,
        from_state=current.state,
        to_state=to,
        attempt=current.attempt,
        detail=detail,
    )
    raise CommitThenRaise(IllegalTransition(f"message {current.id}: {detail}"))


async def requeue(
    cur: Cursor, now: float, current: Message, actor: str, *, attempt: int, detail: str
) -> Message:
    """Back to ``queued`` with no lease and a new fence (any old holder's fence is dead)."""
    await cur.execute(
        "UPDATE messages SET state = 'queued', attempt = %s, fence = fence + 1, reason = NULL,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = %s WHERE id = %s RETURNING *",
        (attempt, now, current.id),
    )
    row = await cur.fetchone()
    await insert_event(
        cur,
        now,
        actor,
        "transition",
        message_id=current.id,
        from_state=current.state,
        to_state=MessageState.QUEUED,
        attempt=attempt,
        detail=detail,
    )
    return message(row)


async def set_state(
    cur: Cursor,
    now: float,
    current: Message,
    to: MessageState,
    actor: str,
    detail: str,
    *,
    reason: str | None = None,
    bump_fence: bool = False,
) -> Message:
    """Move to ``to``, ending any lease (a human's move, a quarantine)."""
    await cur.execute(
        "UPDATE messages SET state = %s, reason = %s, updated_at = %s, lease_owner = NULL,"
        " lease_expires_at = NULL, fence = fence + %s WHERE id = %s RETURNING *",
        (to, reason, now, 1 if bump_fence else 0, current.id),
    )
    row = await cur.fetchone()
    await insert_event(
        cur,
        now,
        actor,
        "transition",
        message_id=current.id,
        from_state=current.state,
        to_state=to,
        attempt=current.attempt,
        detail=detail,
    )
    return message(row)
