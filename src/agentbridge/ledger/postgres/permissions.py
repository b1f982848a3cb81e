"""Permission requests on PostgreSQL: the same semantics as the SQLite ``PermissionMixin``.

A short id is unique among pending requests (a partial unique index); the first answer wins
because the answering transaction locks the row (``FOR UPDATE``) before it looks at its state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow

from agentbridge.ledger.base import NotFound
from agentbridge.ledger.permissions import PermissionRequest, PermissionState, new_short_id
from agentbridge.ledger.postgres.sql import Cursor, insert_event

T = TypeVar("T")


def _request(row: DictRow | None) -> PermissionRequest:
    assert row is not None
    return PermissionRequest.from_row(cast(Any, row))


async def _newest(cur: Cursor, short_id: str, *, lock: bool = False) -> PermissionRequest | None:
    await cur.execute(
        "SELECT * FROM permission_requests WHERE short_id = %s ORDER BY id DESC LIMIT 1"
        + (" FOR UPDATE" if lock else ""),
        (short_id.lower(),),
    )
    row = await cur.fetchone()
    return _request(row) if row is not None else None


class PermissionMixin:
    """Permission methods of ``PostgresLedger``."""

    if TYPE_CHECKING:

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        async def _read(
            self, fn: Callable[[Cursor], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

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

        async def run(cur: Cursor, now: float) -> PermissionRequest:
            while True:  # a collision with a pending id (1 in millions) draws again
                short_id = new_short_id()
                try:
                    async with cur.connection.transaction():  # a savepoint
                        await cur.execute(
                            "INSERT INTO permission_requests (short_id, message_id, agent, tool,"
                            " summary, can_always, state, created_at, expires_at)"
                            " VALUES (%s,%s,%s,%s,%s,%s,'pending',%s,%s) RETURNING *",
                            (
                                short_id,
                                message_id,
                                agent,
                                tool,
                                summary,
                                can_always,
                                now,
                                expires_at,
                            ),
                        )
                        request = _request(await cur.fetchone())
                    break
                except UniqueViolation:
                    continue
            if message_id is not None:
                await insert_event(
                    cur,
                    now,
                    "agent",
                    "permission_asked",
                    message_id=message_id,
                    detail=f"{short_id}: {tool} {summary}",
                )
            return request

        return await self._tx(run)

    async def answer_permission(
        self, short_id: str, state: PermissionState, answered_by: str, *, always: bool = False
    ) -> tuple[PermissionRequest, bool]:
        """Decide the newest request with ``short_id`` if it is still pending (see SQLite)."""
        if state == PermissionState.PENDING:
            raise ValueError("an answer must allow, deny or expire")

        async def run(cur: Cursor, now: float) -> tuple[PermissionRequest, bool]:
            current = await _newest(cur, short_id, lock=True)
            if current is None:
                raise NotFound(f"no permission request {short_id!r}")
            if current.state != PermissionState.PENDING:
                return current, False
            keep = always and current.can_always and state == PermissionState.ALLOWED
            await cur.execute(
                "UPDATE permission_requests SET state = %s, always = %s, answered_by = %s,"
                " answered_at = %s WHERE id = %s RETURNING *",
                (str(state), keep, answered_by, now, current.id),
            )
            updated = _request(await cur.fetchone())
            if current.message_id is not None:
                scope = " for the session" if keep else ""
                await insert_event(
                    cur,
                    now,
                    answered_by,
                    "permission_answered",
                    message_id=current.message_id,
                    detail=f"{current.short_id}: {state}{scope}",
                )
            return updated, True

        return await self._tx(run)

    async def get_permission(self, short_id: str) -> PermissionRequest | None:
        """The newest request that had ``short_id`` (pending or answered)."""
        return await self._read(lambda cur: _newest(cur, short_id))

    async def list_permissions(
        self,
        state: PermissionState | None = None,
        message_id: int | None = None,
        limit: int = 100,
    ) -> list[PermissionRequest]:
        """Requests matching every filter given, oldest first (the newest ``limit``)."""

        async def run(cur: Cursor) -> list[PermissionRequest]:
            where: list[str] = []
            args: list[Any] = []
            if state is not None:
                where.append("state = %s")
                args.append(str(state))
            if message_id is not None:
                where.append("message_id = %s")
                args.append(message_id)
            sql = "SELECT * FROM permission_requests"
            if where:
                sql += " WHERE " + " AND ".join(where)
            await cur.execute(f"{sql} ORDER BY id DESC LIMIT %s", (*args, limit))
            rows = await cur.fetchall()
            return [_request(r) for r in reversed(rows)]

        return await self._read(run)
