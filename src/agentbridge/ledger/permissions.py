"""Permission prompts the agent asked and the chat answered (migration 4).

A row is opened when an agent's ``PermissionRequest`` hook asks the supervisor, with a short
id the user types back (``yes abc12``). The first answer wins: ``answer_permission`` moves a
``pending`` row only, in one transaction, so two answers racing from two phones (or an answer
racing the timeout) leave exactly one decision; the loser learns who won. Each move also lands
in the owning message's audit trail, so ``agentbridge show ID`` tells the whole story.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

from agentbridge.ledger.base import NotFound, insert_event
from agentbridge.ledger.core import LedgerCore

T = TypeVar("T")

#: letters a person can read and type on a phone without confusing them (no 0/o, 1/l/i)
SHORT_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
SHORT_ID_LENGTH = 5


class PermissionState(StrEnum):
    """Where a permission request stands."""

    PENDING = "pending"
    ALLOWED = "allowed"
    DENIED = "denied"
    EXPIRED = "expired"


@dataclass(frozen=True)
class PermissionRequest:
    """One relayed permission prompt and its answer."""

    id: int
    short_id: str
    message_id: int | None
    agent: str
    tool: str
    summary: str
    can_always: bool
    state: PermissionState
    always: bool
    answered_by: str | None
    created_at: float
    expires_at: float
    answered_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PermissionRequest:
        """Build from a ``permission_requests`` row."""
        values: dict[str, Any] = {f.name: row[f.name] for f in fields(cls)}
        values["can_always"] = bool(values["can_always"])
        values["always"] = bool(values["always"])
        values["state"] = PermissionState(values["state"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def new_short_id() -> str:
    """A random short id (31^5 ≈ 28 million values)."""
    return "".join(secrets.choice(SHORT_ID_ALPHABET) for _ in range(SHORT_ID_LENGTH))


def _newest(conn: sqlite3.Connection, short_id: str) -> PermissionRequest | None:
    row = conn.execute(
        "SELECT * FROM permission_requests WHERE short_id = ? ORDER BY id DESC LIMIT 1",
        (short_id.lower(),),
    ).fetchone()
    return PermissionRequest.from_row(row) if row else None


class PermissionMixin(LedgerCore):
    """Permission methods of ``Ledger``."""

    async def open_permission(
        self,
        message_id: int | None,
        agent: str,
        tool: str,
        summary: str,
        expires_at: float,
        *,
        can_always: bool = False,
    ) -> PermissionRequest:
        """Record a new ``pending`` request with a short id unique among pending ones."""

        def run(conn: sqlite3.Connection, now: float) -> PermissionRequest:
            pending = {
                r[0]
                for r in conn.execute(
                    "SELECT short_id FROM permission_requests WHERE state = 'pending'"
                )
            }
            short_id = new_short_id()
            while short_id in pending:
                short_id = new_short_id()
            cur = conn.execute(
                "INSERT INTO permission_requests (short_id, message_id, agent, tool, summary,"
                " can_always, state, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    short_id,
                    message_id,
                    agent,
                    tool,
                    summary,
                    int(can_always),
                    "pending",
                    now,
                    expires_at,
                ),
            )
            if message_id is not None:
                insert_event(
                    conn,
                    now,
                    "agent",
                    "permission_asked",
                    message_id=message_id,
                    detail=f"{short_id}: {tool} {summary}",
                )
            row = conn.execute(
                "SELECT * FROM permission_requests WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
            return PermissionRequest.from_row(row)

        return await self._tx(run)

    async def answer_permission(
        self, short_id: str, state: PermissionState, answered_by: str, *, always: bool = False
    ) -> tuple[PermissionRequest, bool]:
        """Decide the newest request with ``short_id`` if it is still pending; returns the row
        and whether this call decided it (False: it was answered already — by ``answered_by``
        of the returned row). ``NotFound`` when no request ever had that id."""
        if state == PermissionState.PENDING:
            raise ValueError("an answer must allow, deny or expire")

        def run(conn: sqlite3.Connection, now: float) -> tuple[PermissionRequest, bool]:
            current = _newest(conn, short_id)
            if current is None:
                raise NotFound(f"no permission request {short_id!r}")
            if current.state != PermissionState.PENDING:
                return current, False
            keep = always and current.can_always and state == PermissionState.ALLOWED
            conn.execute(
                "UPDATE permission_requests SET state = ?, always = ?, answered_by = ?,"
                " answered_at = ? WHERE id = ?",
                (str(state), int(keep), answered_by, now, current.id),
            )
            if current.message_id is not None:
                scope = " for the session" if keep else ""
                insert_event(
                    conn,
                    now,
                    answered_by,
                    "permission_answered",
                    message_id=current.message_id,
                    detail=f"{current.short_id}: {state}{scope}",
                )
            updated = _newest(conn, short_id)
            assert updated is not None
            return updated, True

        return await self._tx(run)

    async def get_permission(self, short_id: str) -> PermissionRequest | None:
        """The newest request that had ``short_id`` (pending or answered)."""
        return await self._read(lambda conn: _newest(conn, short_id))

    async def list_permissions(
        self,
        state: PermissionState | None = None,
        message_id: int | None = None,
        limit: int = 100,
    ) -> list[PermissionRequest]:
        """Requests matching every filter given, oldest first (the newest ``limit``)."""

        def run(conn: sqlite3.Connection) -> list[PermissionRequest]:
            where: list[str] = []
            args: list[Any] = []
            if state is not None:
                where.append("state = ?")
                args.append(str(state))
            if message_id is not None:
                where.append("message_id = ?")
                args.append(message_id)
            sql = "SELECT * FROM permission_requests"
            if where:
                sql += " WHERE " + " AND ".join(where)
            rows = conn.execute(f"{sql} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
            return [PermissionRequest.from_row(r) for r in reversed(rows)]

        return await self._read(run)
