"""Moves that take a message out of flight other than by its turn ending, and a human's moves.

A dead session's victims are replayed (attempt + 1, quarantined at the limit); a claimed
message nothing reached is released unchanged; a human quarantines, requeues or drops. Each
method is one transaction of ``Ledger`` (see ``agentbridge.ledger.sqlite``).
"""

from __future__ import annotations

import sqlite3

from agentbridge.ledger.base import (
    IN_FLIGHT_SQL,
    _get,
    _illegal,
    _refuse,
    _requeue,
    _set_state,
    where,
)
from agentbridge.ledger.nodes_sqlite import NodesMixin
from agentbridge.ledger.records import message_from_row
from agentbridge.models import Message
from agentbridge.states import IN_FLIGHT, MESSAGE_TRANSITIONS, MessageState


class RequeueMixin(NodesMixin):
    """Recovery and human-decision methods of ``Ledger``."""

    async def victims(
        self,
        owner: str | None = None,
        expired_before: float | None = None,
        agent: str | None = None,
    ) -> list[Message]:
        """In-flight messages of a dead session (by owner / agent) or with expired leases.

        Returned in original order (oldest first): that is the replay order.
        """
        test, params = where(
            ("lease_owner = ?", owner),
            ("agent = ?", agent),
            ("lease_expires_at < ?", expired_before),
            always=f"state IN {IN_FLIGHT_SQL}",
        )
        sql = f"SELECT * FROM messages {test} ORDER BY id"

        def run(conn: sqlite3.Connection) -> list[Message]:
            return [message_from_row(r) for r in conn.execute(sql, params)]

        return await self._read(run)

    async def requeue_victim(
        self,
        message_id: int,
        fence: int,
        reason: str,
        actor: str = "recovery",
        *,
        enforce_limit: bool = True,
    ) -> Message:
        """Put a victim back at the head of its conversation with attempt + 1.

        At the attempt limit it is quarantined instead, with a readable reason. A message that
        failed through no fault of its own (the agent was rate-limited) is requeued with
        ``enforce_limit=False``: the wait before its next attempt bounds the retries.
        """

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            self._owner_check(conn, now, current.agent, "requeue", message_id)
            if current.fence != fence:
                _refuse(conn, now, message_id, fence, "requeue", current)
            if current.state not in IN_FLIGHT:
                _illegal(conn, now, current, MessageState.QUEUED, actor, "requeue: not in flight")
            if enforce_limit and current.attempt >= self.max_attempts:
                why = (
                    f"quarantined after {current.attempt} attempts"
                    f" (limit {self.max_attempts}); last: {reason}"
                )
                # bump the fence: the dead holder's fence must not match the quarantined row
                return _set_state(
                    conn,
                    now,
                    current,
                    MessageState.QUARANTINED,
                    actor,
                    why,
                    reason=why,
                    bump_fence=True,
                )
            return _requeue(
                conn, now, current, actor, attempt=current.attempt + 1, detail=f"replay: {reason}"
            )

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def release(
        self, message_id: int, fence: int, reason: str, actor: str = "host"
    ) -> Message:
        """Give a claimed message back unchanged (attempt kept): nothing reached the agent.

        Used when the input box held someone else's text or no box was on screen, so no
        keystroke of this message was sent; only a ``claimed`` message can be released.
        """

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            self._owner_check(conn, now, current.agent, "release", message_id)
            if current.fence != fence:
                _refuse(conn, now, message_id, fence, "release", current)
            if current.state != MessageState.CLAIMED:
                _illegal(conn, now, current, MessageState.QUEUED, actor, "release: not claimed")
            return _requeue(
                conn, now, current, actor, attempt=current.attempt, detail=f"released: {reason}"
            )

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def quarantine(self, message_id: int, reason: str, actor: str = "recovery") -> Message:
        """Stop a queued or in-flight message and wait for a human."""
        return await self._human_move(message_id, MessageState.QUARANTINED, reason, actor)

    async def requeue_quarantined(self, message_id: int, actor: str = "human") -> Message:
        """A human decided to try a quarantined (or interrupted) message again (attempts start
        over)."""

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if current.state not in (MessageState.QUARANTINED, MessageState.INTERRUPTED):
                why = "not quarantined or interrupted"
                _illegal(conn, now, current, MessageState.QUEUED, actor, why)
            return _requeue(conn, now, current, actor, attempt=1, detail="requeued by a human")

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def drop(
        self, message_id: int, reason: str = "dropped by a human", actor: str = "human"
    ) -> Message:
        """Give up on a queued or quarantined message (state ``failed``)."""
        return await self._human_move(message_id, MessageState.FAILED, reason, actor)

    async def _human_move(
        self, message_id: int, to: MessageState, reason: str, actor: str
    ) -> Message:
        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if to not in MESSAGE_TRANSITIONS[current.state]:
                _illegal(conn, now, current, to, actor)
            return _set_state(conn, now, current, to, actor, reason, reason=reason, bump_fence=True)

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg
