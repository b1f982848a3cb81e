"""Asks on PostgreSQL: the same semantics as the SQLite ``AskMixin`` (``ledger/asks.py``).

A short id is unique among pending asks (a partial unique index); the first answer wins
because the answering transaction locks the row (``FOR UPDATE``) before it looks at its state.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from psycopg.errors import UniqueViolation

from agentbridge.ledger.asks import (
    Ask,
    AskState,
    answered_detail,
    ask_filters,
    asked_detail,
    check_answer,
)
from agentbridge.ledger.base import NotFound
from agentbridge.ledger.permissions import new_short_id
from agentbridge.ledger.postgres.sql import Cursor, insert_event

T = TypeVar("T")


async def _get(cur: Cursor, ask_id: int, *, lock: bool = False) -> Ask:
    await cur.execute(
        "SELECT * FROM asks WHERE id = %s" + (" FOR UPDATE" if lock else ""), (ask_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no ask #{ask_id}")
    return Ask.from_row(cast(Any, row))


class AskMixin:
    """Ask methods of ``PostgresLedger``."""

    if TYPE_CHECKING:

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        async def _read(
            self, fn: Callable[[Cursor], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def open_ask(
        self,
        agent: str,
        channel: str,
        conversation: str,
        question: str,
        choices: Sequence[str],
        expires_at: float,
        *,
        message_id: int | None = None,
        attempt: int | None = None,
    ) -> Ask:
        """Record a new ``pending`` question (see ``AskStore``)."""

        async def run(cur: Cursor, now: float) -> Ask:
            while True:  # a collision with a pending id (1 in millions) draws again
                short_id = new_short_id()
                try:
                    async with cur.connection.transaction():  # a savepoint
                        await cur.execute(
                            "INSERT INTO asks (short_id, agent, message_id, attempt, channel,"
                            " conversation, question, choices, state, created_at, expires_at)"
                            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,'pending',%s,%s) RETURNING *",
                            (
                                short_id,
                                agent,
                                message_id,
                                attempt,
                                channel,
                                conversation,
                                question,
                                json.dumps(list(choices)),
                                now,
                                expires_at,
                            ),
                        )
                        row = await cur.fetchone()
                    break
                except UniqueViolation:
                    continue
            if message_id is not None:
                await insert_event(
                    cur,
                    now,
                    f"agent:{agent}",
                    "ask",
                    message_id=message_id,
                    detail=asked_detail(short_id, question),
                )
            return Ask.from_row(cast(Any, row))

        return await self._tx(run)

    async def answer_ask(
        self,
        ask_id: int,
        state: AskState,
        answered_by: str,
        answer: str | None = None,
        key: str | None = None,
    ) -> tuple[Ask, bool]:
        """Settle a pending ask, first answer wins (see ``AskStore``)."""
        check_answer(state, answer)

        async def run(cur: Cursor, now: float) -> tuple[Ask, bool]:
            current = await _get(cur, ask_id, lock=True)
            if current.state != AskState.PENDING:
                return current, False
            await cur.execute(
                "UPDATE asks SET state = %s, answer = %s, answered_by = %s, answer_key = %s,"
                " answered_at = %s WHERE id = %s",
                (str(state), answer, answered_by, key, now, ask_id),
            )
            if current.message_id is not None:
                await insert_event(
                    cur,
                    now,
                    answered_by,
                    "ask_answered" if state == AskState.ANSWERED else "ask_expired",
                    message_id=current.message_id,
                    detail=answered_detail(current.short_id, state, answer),
                )
            return await _get(cur, ask_id), True

        return await self._tx(run)

    async def get_ask(self, ask_id: int) -> Ask:
        """One ask; raises ``NotFound``."""
        return await self._read(lambda cur: _get(cur, ask_id))

    async def list_asks(
        self,
        state: AskState | None = None,
        channel: str | None = None,
        conversation: str | None = None,
        message_id: int | None = None,
        limit: int = 100,
    ) -> list[Ask]:
        """Asks matching every filter given, oldest first (the newest ``limit``)."""
        where, args = ask_filters(state, channel, conversation, message_id, "%s")

        async def run(cur: Cursor) -> list[Ask]:
            await cur.execute(
                f"SELECT * FROM asks{where} ORDER BY id DESC LIMIT %s", (*args, limit)
            )
            return [Ask.from_row(cast(Any, r)) for r in reversed(await cur.fetchall())]

        return await self._read(run)
