"""Outbox rows inside the caller's transaction: a reply written ahead, a row moved on.

Plain functions on a connection (nothing here awaits), shared by the outbox methods, the
``unknown`` ones and a completing turn (its reply is queued in the same transaction).
"""

from __future__ import annotations

import sqlite3
from typing import TypedDict, Unpack

from agentbridge.ledger.base import (
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    _CommitThenRaise,
    insert_event,
    text_hash,
)
from agentbridge.ledger.core import LedgerCore
from agentbridge.ledger.records import outbox_from_row
from agentbridge.models import OutboxItem
from agentbridge.states import OUTBOX_TRANSITIONS, OutboxState

__all__ = ["DEFAULT_TTL", "ReplyChanges", "ReplyMover", "insert_reply", "move_reply"]

#: how long a reply may wait for delivery before it expires (seconds)
DEFAULT_TTL = 86400.0


class ReplyChanges(TypedDict, total=False):
    """What an outbox move changes besides the state (left out: kept as it is)."""

    attempts_delta: int  #: attempts + this (a reserved send: 1)
    error: str | None  #: the last error, for reports
    scheduled_in: float  #: due again this many seconds after the move
    platform_message_id: str | None
    only_from: OutboxState  #: refuse the move unless the row is in this state
    parts_sent: int
    node: str | None  #: the node reserving a send (None: left as it is)


def insert_reply(
    conn: sqlite3.Connection,
    now: float,
    *,
    channel: str,
    conversation: str,
    text: str,
    key: str,
    message_id: int | None = None,
    reply_to: str | None = None,
    scheduled_at: float | None = None,
    ttl: float = DEFAULT_TTL,
) -> OutboxItem:
    """Write a reply row ahead of sending; the same key returns the stored row, the same key
    with other text is refused (the refusal is kept in the audit trail)."""
    digest = text_hash(text)
    row = conn.execute("SELECT * FROM outbox WHERE idem_key = ?", (key,)).fetchone()
    if row is not None:
        if row["text_hash"] != digest:
            insert_event(
                conn,
                now,
                "outbox",
                "idempotency_conflict",
                message_id=row["message_id"],
                outbox_id=row["id"],
                detail=f"reply key {key!r} re-sent with different text",
            )
            raise _CommitThenRaise(
                IdempotencyConflict(f"reply key {key!r} already used with different text")
            )
        return outbox_from_row(row)
    row = conn.execute(
        "INSERT INTO outbox (message_id, channel, conversation, text, text_hash, idem_key,"
        " reply_to, state, scheduled_at, expires_at, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,'pending',?,?,?,?) RETURNING *",
        (
            message_id,
            channel,
            conversation,
            text,
            digest,
            key,
            reply_to,
            scheduled_at if scheduled_at is not None else now,
            now + ttl,
            now,
            now,
        ),
    ).fetchone()
    insert_event(
        conn,
        now,
        "outbox",
        "reply_queued",
        message_id=message_id,
        outbox_id=row["id"],
        to_state="pending",
        detail=f"key={key}",
    )
    return outbox_from_row(row)


def move_reply(
    conn: sqlite3.Connection,
    now: float,
    outbox_id: int,
    to: OutboxState,
    detail: str,
    **changes: Unpack[ReplyChanges],
) -> OutboxItem:
    """Move outbox row ``outbox_id`` to ``to`` (only from ``only_from`` when given), with its
    audit event; raises ``NotFound`` / ``IllegalTransition``."""
    only_from = changes.get("only_from")
    scheduled_in = changes.get("scheduled_in")
    row = conn.execute("SELECT * FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no outbox row {outbox_id}")
    current = OutboxState(row["state"])
    if to not in OUTBOX_TRANSITIONS[current] or only_from not in (None, current):
        raise IllegalTransition(f"outbox {outbox_id}: {current} -> {to}")
    row = conn.execute(
        "UPDATE outbox SET state = ?, attempts = attempts + ?, updated_at = ?,"
        " last_error = COALESCE(?, last_error), scheduled_at = COALESCE(?, scheduled_at),"
        " platform_message_id = COALESCE(?, platform_message_id),"
        " parts_sent = COALESCE(?, parts_sent), node = COALESCE(?, node)"
        " WHERE id = ? RETURNING *",
        (
            to,
            changes.get("attempts_delta", 0),
            now,
            changes.get("error"),
            None if scheduled_in is None else now + scheduled_in,
            changes.get("platform_message_id"),
            changes.get("parts_sent"),
            changes.get("node"),
            outbox_id,
        ),
    ).fetchone()
    insert_event(
        conn,
        now,
        "outbox",
        "outbox",
        message_id=row["message_id"],
        outbox_id=outbox_id,
        from_state=current,
        to_state=to,
        attempt=row["attempts"],
        detail=detail,
    )
    return outbox_from_row(row)


class ReplyMover(LedgerCore):
    """The outbox methods' common step: one move as its own transaction, listeners told."""

    async def _move_reply(
        self, outbox_id: int, to: OutboxState, detail: str, **changes: Unpack[ReplyChanges]
    ) -> OutboxItem:
        item = await self._tx(
            lambda conn, now: move_reply(conn, now, outbox_id, to, detail, **changes)
        )
        self._notify("outbox", [outbox_id])
        return item
