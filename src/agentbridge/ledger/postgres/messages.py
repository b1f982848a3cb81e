"""Claims, leases and every fenced transition of the PostgreSQL ledger.

A claim is one statement: the head of the agent's queue is taken ``FOR UPDATE SKIP LOCKED``
(a row another store is claiming is skipped, never waited on or shared), moved to ``claimed``
with a new fence, audited and announced. A candidate must be the head of its conversation, so
skipping a locked row never lets a later message of that conversation overtake it. With
``exclusive`` (one message in flight per agent) claims of one agent are serialized by a
transaction-scoped advisory lock, taken before the statement's snapshot, so two stores cannot
both see "nothing in flight" for the same agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from agentbridge.ledger.base import _rank
from agentbridge.ledger.postgres.sql import (
    CHANNEL,
    IN_FLIGHT_SQL,
    Cursor,
    get_locked,
    illegal,
    insert_event,
    message,
    notify,
    refuse,
    requeue,
    set_state,
)
from agentbridge.models import Message
from agentbridge.sanitize import clean_text
from agentbridge.states import IN_FLIGHT, MESSAGE_TRANSITIONS, TERMINAL, MessageState

if TYPE_CHECKING:
    from agentbridge.ledger.nodes import AgentFences
    from agentbridge.models import OutboxItem

T = TypeVar("T")

_CLAIM = (
    "WITH pick AS (SELECT id FROM messages AS m WHERE agent = %(agent)s AND state = 'queued'"
    " AND NOT EXISTS (SELECT 1 FROM messages AS f WHERE f.agent = m.agent"
    "   AND f.channel = m.channel AND f.conversation = m.conversation"
    f"  AND f.state IN {IN_FLIGHT_SQL})"
    " AND NOT EXISTS (SELECT 1 FROM messages AS e WHERE e.agent = m.agent"
    "   AND e.channel = m.channel AND e.conversation = m.conversation AND e.state = 'queued'"
    "   AND (e.priority > m.priority OR (e.priority = m.priority AND e.id < m.id)))"
    " {exclusive} ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED),"
    " claimed AS (UPDATE messages SET state = 'claimed', fence = fence + 1,"
    "   lease_owner = %(owner)s, lease_expires_at = %(expires)s, heartbeat_at = %(now)s,"
    "   updated_at = %(now)s FROM pick WHERE messages.id = pick.id AND messages.state = 'queued'"
    "   RETURNING messages.*),"
    " audit AS (INSERT INTO events (message_id, at, actor, kind, from_state, to_state,"
    "   attempt, detail) SELECT id, %(now)s, %(owner)s, 'transition', 'queued', 'claimed',"
    "   attempt, 'fence=' || fence FROM claimed)"
    f" SELECT claimed.*, pg_notify('{CHANNEL}', %(token)s || '|message|' || claimed.id)"
    " FROM claimed"
)
_CLAIM_ANY = _CLAIM.format(exclusive="")
_CLAIM_EXCLUSIVE = _CLAIM.format(
    exclusive=f"AND NOT EXISTS (SELECT 1 FROM messages AS x WHERE x.agent = m.agent"
    f" AND x.state IN {IN_FLIGHT_SQL})"
)


class MessagesMixin:
    """Claim, lease and transition methods of ``PostgresLedger``."""

    if TYPE_CHECKING:
        fences: AgentFences
        clock: Callable[[], float]
        max_attempts: int
        token: str

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        def _notify(self, kind: str, ids: Iterable[int]) -> None: ...
        async def _owner_check(
            self, cur: Cursor, now: float, agent: str, what: str, message_id: int | None
        ) -> bool: ...
        async def _enqueue_in_tx(
            self,
            cur: Cursor,
            now: float,
            *,
            channel: str,
            conversation: str,
            text: str,
            key: str,
            message_id: int | None = None,
            reply_to: str | None = None,
            scheduled_at: float | None = None,
            ttl: float = ...,
        ) -> OutboxItem: ...

    async def claim_next(
        self, agent: str, owner: str, lease_seconds: float = 600.0, *, exclusive: bool = True
    ) -> Message | None:
        """Lease the next message for ``agent``: priority lane first, then FIFO; skips busy
        conversations, and with ``exclusive`` returns None while the agent has one in flight."""

        async def run(cur: Cursor, now: float) -> Message | None:
            if not await self._owner_check(cur, now, agent, "claim", None):
                return None  # this node lost the agent: nothing to claim
            if exclusive:
                await cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 11))", ("claim:" + agent,)
                )
            params = {
                "agent": agent,
                "owner": owner,
                "expires": now + lease_seconds,
                "now": now,
                "token": self.token,
            }
            await cur.execute(_CLAIM_EXCLUSIVE if exclusive else _CLAIM_ANY, params)
            row = await cur.fetchone()
            return None if row is None else message(row)

        msg = await self._tx(run)
        if msg is not None:
            self._notify("message", [msg.id])
        return msg

    async def heartbeat(self, message_id: int, fence: int, lease_seconds: float) -> Message:
        """Extend the lease of an in-flight message (the agent is making progress)."""

        async def run(cur: Cursor, now: float) -> Message:
            if self.fences:  # fenced by an agent lease (a fleet node): checked first
                agent = (await get_locked(cur, message_id)).agent
                await self._owner_check(cur, now, agent, "heartbeat", message_id)
            await cur.execute(
                "UPDATE messages SET lease_expires_at = %s, heartbeat_at = %s"
                f" WHERE id = %s AND fence = %s AND state IN {IN_FLIGHT_SQL} RETURNING *",
                (now + lease_seconds, now, message_id, fence),
            )
            row = await cur.fetchone()
            if row is None:
                await refuse(cur, now, message_id, fence, "heartbeat", None)
            return message(row)

        return await self._tx(run)

    async def mark_submitted(self, message_id: int, fence: int, actor: str = "host") -> Message:
        """Pasted and Enter pressed (weak evidence)."""
        return await self._transition(message_id, fence, MessageState.SUBMITTED, actor)

    async def mark_accepted(
        self, message_id: int, fence: int, actor: str = "host", detail: str = ""
    ) -> Message:
        """The agent's own record shows the prompt."""
        return await self._transition(message_id, fence, MessageState.ACCEPTED, actor, detail)

    async def complete(
        self,
        message_id: int,
        fence: int,
        reply: str,
        actor: str = "host",
        *,
        queue_reply: bool = True,
        detail: str = "",
    ) -> Message:
        """The turn ended: record the reply and (same transaction) queue it in the outbox."""
        return await self._transition(
            message_id,
            fence,
            MessageState.COMPLETED,
            actor,
            detail,
            reply=clean_text(reply),
            queue_reply=queue_reply,
        )

    async def fail(self, message_id: int, fence: int, reason: str, actor: str = "host") -> Message:
        """Permanent failure of an in-flight message."""
        return await self._transition(
            message_id, fence, MessageState.FAILED, actor, reason, reason=reason
        )

    async def interrupt(
        self, message_id: int, fence: int, detail: str, actor: str = "host"
    ) -> Message:
        """Someone interrupted the turn in the pane: ``interrupted``, never replayed."""
        return await self._transition(
            message_id, fence, MessageState.INTERRUPTED, actor, detail, reason=detail
        )

    async def _transition(
        self,
        message_id: int,
        fence: int,
        to: MessageState,
        actor: str,
        detail: str = "",
        *,
        reply: str | None = None,
        reason: str | None = None,
        queue_reply: bool = False,
    ) -> Message:
        outbox_ids: list[int] = []

        async def run(cur: Cursor, now: float) -> Message:
            current = await get_locked(cur, message_id)
            await self._owner_check(cur, now, current.agent, f"-> {to}", message_id)
            if current.fence != fence:
                await refuse(cur, now, message_id, fence, f"-> {to}", current)
            if current.state == to or (
                to in (MessageState.SUBMITTED, MessageState.ACCEPTED)
                and _rank(current.state) >= _rank(to)
            ):
                return current  # duplicate evidence (hook and transcript both report): no-op
            if current.state not in IN_FLIGHT or to not in MESSAGE_TRANSITIONS[current.state]:
                await illegal(cur, now, current, to, actor)
            terminal = to in TERMINAL
            await cur.execute(
                "UPDATE messages SET state = %s, updated_at = %s,"
                " reply = COALESCE(%s, reply), reason = COALESCE(%s, reason),"
                " lease_owner = CASE WHEN %s THEN NULL ELSE lease_owner END,"
                " lease_expires_at = CASE WHEN %s THEN NULL ELSE lease_expires_at END"
                " WHERE id = %s AND fence = %s RETURNING *",
                (to, now, reply, reason, terminal, terminal, message_id, fence),
            )
            msg = message(await cur.fetchone())
            await insert_event(
                cur,
                now,
                actor,
                "transition",
                message_id=message_id,
                from_state=current.state,
                to_state=to,
                attempt=current.attempt,
                detail=detail,
            )
            if to == MessageState.COMPLETED and queue_reply and reply:
                item = await self._enqueue_in_tx(
                    cur,
                    now,
                    channel=msg.channel,
                    conversation=msg.conversation,
                    text=reply,
                    key=f"reply:{msg.id}",
                    message_id=msg.id,
                    reply_to=msg.platform_id,
                )
                outbox_ids.append(item.id)
            await notify(cur, self.token, "message", [msg.id])
            return msg

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        self._notify("outbox", outbox_ids)
        return msg

    # ------------------------------------------------------------------ recovery

    async def requeue_victim(
        self,
        message_id: int,
        fence: int,
        reason: str,
        actor: str = "recovery",
        *,
        enforce_limit: bool = True,
    ) -> Message:
        """Replay: back to the head of its conversation with attempt + 1, or quarantined at
        the attempt limit (fence bumped: the dead holder's fence must not match)."""

        async def run(cur: Cursor, now: float) -> Message:
            current = await get_locked(cur, message_id)
            await self._owner_check(cur, now, current.agent, "requeue", message_id)
            if current.fence != fence:
                await refuse(cur, now, message_id, fence, "requeue", current)
            if current.state not in IN_FLIGHT:
                why = "requeue: not in flight"
                await illegal(cur, now, current, MessageState.QUEUED, actor, why)
            if enforce_limit and current.attempt >= self.max_attempts:
                why = (
                    f"quarantined after {current.attempt} attempts"
                    f" (limit {self.max_attempts}); last: {reason}"
                )
                to = MessageState.QUARANTINED
                msg = await set_state(
                    cur, now, current, to, actor, why, reason=why, bump_fence=True
                )
            else:
                detail = f"replay: {reason}"
                msg = await requeue(
                    cur, now, current, actor, attempt=current.attempt + 1, detail=detail
                )
            await notify(cur, self.token, "message", [msg.id])
            return msg

        return await self._announced(run)

    async def release(
        self, message_id: int, fence: int, reason: str, actor: str = "host"
    ) -> Message:
        """Give a ``claimed`` message back unchanged (nothing reached the agent)."""

        async def run(cur: Cursor, now: float) -> Message:
            current = await get_locked(cur, message_id)
            await self._owner_check(cur, now, current.agent, "release", message_id)
            if current.fence != fence:
                await refuse(cur, now, message_id, fence, "release", current)
            if current.state != MessageState.CLAIMED:
                await illegal(cur, now, current, MessageState.QUEUED, actor, "release: not claimed")
            msg = await requeue(
                cur, now, current, actor, attempt=current.attempt, detail=f"released: {reason}"
            )
            await notify(cur, self.token, "message", [msg.id])
            return msg

        return await self._announced(run)

    async def quarantine(self, message_id: int, reason: str, actor: str = "recovery") -> Message:
        """Stop a queued or in-flight message until a human decides."""
        return await self._human_move(message_id, MessageState.QUARANTINED, reason, actor)

    async def requeue_quarantined(self, message_id: int, actor: str = "human") -> Message:
        """A human tries a quarantined or interrupted message again (attempts start over)."""

        async def run(cur: Cursor, now: float) -> Message:
            current = await get_locked(cur, message_id)
            if current.state not in (MessageState.QUARANTINED, MessageState.INTERRUPTED):
                why = "not quarantined or interrupted"
                await illegal(cur, now, current, MessageState.QUEUED, actor, why)
            msg = await requeue(cur, now, current, actor, attempt=1, detail="requeued by a human")
            await notify(cur, self.token, "message", [msg.id])
            return msg

        return await self._announced(run)

    async def drop(
        self, message_id: int, reason: str = "dropped by a human", actor: str = "human"
    ) -> Message:
        """A human gives up on a queued or quarantined message (``failed``)."""
        return await self._human_move(message_id, MessageState.FAILED, reason, actor)

    async def _human_move(
        self, message_id: int, to: MessageState, reason: str, actor: str
    ) -> Message:
        async def run(cur: Cursor, now: float) -> Message:
            current = await get_locked(cur, message_id)
            if to not in MESSAGE_TRANSITIONS[current.state]:
                await illegal(cur, now, current, to, actor)
            msg = await set_state(
                cur, now, current, to, actor, reason, reason=reason, bump_fence=True
            )
            await notify(cur, self.token, "message", [msg.id])
            return msg

        return await self._announced(run)

    async def _announced(self, run: Callable[[Cursor, float], Awaitable[Message]]) -> Message:
        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def note(self, message_id: int, actor: str, kind: str, detail: str) -> None:
        """Record an observation (a receipt, a warning) in a message's audit trail."""

        async def run(cur: Cursor, now: float) -> None:
            await insert_event(cur, now, actor, kind, message_id=message_id, detail=detail)

        await self._tx(run)
