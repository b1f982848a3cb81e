"""Questions the agent asked the user (MCP ``ask``) and their answers (SQLite migration 6).

A row is opened when the agent's ``ask`` tool calls the supervisor, with a short id the user
may type back (``answer abc12 …``). The answer is written here *before* the channel's ingest
returns, so an answer the bridge took is never lost: a supervisor restart between the answer
and the waiting tool call leaves it in the row, where the next wait finds it. The first answer
wins (``answer_ask`` moves a ``pending`` row only, in one transaction), so an answer racing the
timeout leaves exactly one outcome. ``answer_key`` is the platform's idempotency key of the
answering message: a redelivered answer is recognised, not taken as the next one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Protocol

from agentbridge.ledger.base import NotFound, insert_event
from agentbridge.ledger.core import LedgerCore
from agentbridge.ledger.permissions import new_short_id

QUESTION_EVENT_LIMIT = 160  #: how much of a question the audit trail repeats
#: the asks ``prune`` deletes (both backends; ``{cutoff}``: the driver's retention-edge mark):
#: settled ones by when they were, and pending ones whose wait ended long ago (a supervisor
#: gone before it could expire them): nobody waits for an answer past ``expires_at``
PRUNABLE_ASK = "COALESCE(answered_at, expires_at) < {cutoff}"


class AskState(StrEnum):
    """Where a question stands."""

    PENDING = "pending"
    ANSWERED = "answered"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Ask:
    """One question of an agent to a conversation, and its answer."""

    id: int
    short_id: str
    agent: str
    message_id: int | None  #: the message in flight when asked (None: agent-initiated)
    attempt: int | None  #: that message's attempt (a replayed turn re-asking gets the answer)
    channel: str
    conversation: str
    question: str
    choices: tuple[str, ...]
    state: AskState
    answer: str | None
    answered_by: str | None
    answer_key: str | None
    created_at: float
    expires_at: float
    answered_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Ask:
        """Build from an ``asks`` row (SQLite or PostgreSQL)."""
        values: dict[str, Any] = {f.name: row[f.name] for f in fields(cls)}
        values["choices"] = tuple(json.loads(values["choices"] or "[]"))
        values["state"] = AskState(values["state"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["choices"] = list(self.choices)
        return out


def asked_detail(short_id: str, question: str) -> str:
    """The ``ask`` event's detail (both backends write the same)."""
    text = " ".join(question.split())
    if len(text) > QUESTION_EVENT_LIMIT:
        text = text[: QUESTION_EVENT_LIMIT - 1] + "…"
    return f"{short_id}: {text}"


def answered_detail(short_id: str, state: AskState, answer: str | None) -> str:
    """The ``ask_answered`` / ``ask_expired`` event's detail."""
    if state == AskState.EXPIRED:
        return f"{short_id}: no answer"
    return asked_detail(short_id, answer or "")


def check_answer(state: AskState, answer: str | None) -> None:
    """Refuse a move that is not an answer (both backends)."""
    if state == AskState.PENDING:
        raise ValueError("an ask is answered or expired, never moved back to pending")
    if state == AskState.ANSWERED and answer is None:
        raise ValueError("an answered ask needs its answer text")


class AskStore(Protocol):
    """The ``LedgerStore`` methods of questions (``LedgerStore`` inherits them)."""

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
        """Record a ``pending`` question with a short id unique among pending ones (and an
        ``ask`` event on the message, when there is one)."""
        ...

    async def answer_ask(
        self,
        ask_id: int,
        state: AskState,
        answered_by: str,
        answer: str | None = None,
        key: str | None = None,
    ) -> tuple[Ask, bool]:
        """First answer wins: move a ``pending`` ask to ``answered`` (with ``answer``) or
        ``expired``; ``(row, False)`` when it was settled already; ``NotFound`` for no row."""
        ...

    async def get_ask(self, ask_id: int) -> Ask:
        """One ask; raises ``NotFound``."""
        ...

    async def list_asks(
        self,
        state: AskState | None = None,
        channel: str | None = None,
        conversation: str | None = None,
        message_id: int | None = None,
        limit: int = 100,
    ) -> list[Ask]:
        """Asks matching every filter given, oldest first (the newest ``limit``)."""
        ...


def _get(conn: sqlite3.Connection, ask_id: int) -> Ask:
    row = conn.execute("SELECT * FROM asks WHERE id = ?", (ask_id,)).fetchone()
    if row is None:
        raise NotFound(f"no ask #{ask_id}")
    return Ask.from_row(row)


class AskMixin(LedgerCore):
    """Ask methods of the SQLite ``Ledger``."""

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

        def run(conn: sqlite3.Connection, now: float) -> Ask:
            pending = {
                r[0] for r in conn.execute("SELECT short_id FROM asks WHERE state = 'pending'")
            }
            short_id = new_short_id()
            while short_id in pending:
                short_id = new_short_id()
            cur = conn.execute(
                "INSERT INTO asks (short_id, agent, message_id, attempt, channel, conversation,"
                " question, choices, state, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
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
            if message_id is not None:
                insert_event(
                    conn,
                    now,
                    f"agent:{agent}",
                    "ask",
                    message_id=message_id,
                    detail=asked_detail(short_id, question),
                )
            assert cur.lastrowid is not None
            return _get(conn, cur.lastrowid)

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

        def run(conn: sqlite3.Connection, now: float) -> tuple[Ask, bool]:
            current = _get(conn, ask_id)
            if current.state != AskState.PENDING:
                return current, False
            conn.execute(
                "UPDATE asks SET state = ?, answer = ?, answered_by = ?, answer_key = ?,"
                " answered_at = ? WHERE id = ?",
                (str(state), answer, answered_by, key, now, ask_id),
            )
            if current.message_id is not None:
                insert_event(
                    conn,
                    now,
                    answered_by,
                    "ask_answered" if state == AskState.ANSWERED else "ask_expired",
                    message_id=current.message_id,
                    detail=answered_detail(current.short_id, state, answer),
                )
            return _get(conn, ask_id), True

        return await self._tx(run)

    async def get_ask(self, ask_id: int) -> Ask:
        """One ask; raises ``NotFound``."""
        return await self._read(lambda conn: _get(conn, ask_id))

    async def list_asks(
        self,
        state: AskState | None = None,
        channel: str | None = None,
        conversation: str | None = None,
        message_id: int | None = None,
        limit: int = 100,
    ) -> list[Ask]:
        """Asks matching every filter given, oldest first (the newest ``limit``)."""
        where, args = ask_filters(state, channel, conversation, message_id, "?")

        def run(conn: sqlite3.Connection) -> list[Ask]:
            rows = conn.execute(
                f"SELECT * FROM asks{where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
            return [Ask.from_row(r) for r in reversed(rows)]

        return await self._read(run)


def ask_filters(
    state: AskState | None,
    channel: str | None,
    conversation: str | None,
    message_id: int | None,
    mark: str,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause of ``list_asks`` (``mark``: the driver's placeholder)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("state", None if state is None else str(state)),
        ("channel", channel),
        ("conversation", conversation),
        ("message_id", message_id),
    ):
        if value is not None:
            where.append(f"{column} = {mark}")
            args.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), args
