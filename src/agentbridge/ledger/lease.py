"""Claim and fenced transitions: how a message is leased to one agent session and moved on.

A claim hands out a new fencing token (``fence``); every later move of that message presents
it, so a session whose lease was taken over cannot touch the message again (``StaleLease``,
recorded). Each method is one transaction of ``Ledger`` (see ``agentbridge.ledger.sqlite``).
"""

from __future__ import annotations

import sqlite3

from agentbridge.ledger.base import (
    IN_FLIGHT_SQL,
    _get,
    _illegal,
    _rank,
    _refuse,
    insert_event,
    transition_event,
)
from agentbridge.ledger.nodes_sqlite import NodesMixin
from agentbridge.ledger.outbox_rows import insert_reply
from agentbridge.ledger.records import message_from_row
from agentbridge.models import Message
from agentbridge.sanitize import clean_text
from agentbridge.states import IN_FLIGHT, MESSAGE_TRANSITIONS, TERMINAL, MessageState


class LeaseMixin(NodesMixin):
    """Claim, heartbeat and fenced transition methods of ``Ledger``."""

    async def claim_next(
        self,
        agent: str,
        owner: str,
        lease_seconds: float = 600.0,
        *,
        exclusive: bool = True,
    ) -> Message | None:
        """Lease the next message for ``agent``: control lane first, then oldest (FIFO).

        Skips conversations that already have a message in flight. With ``exclusive`` (one
        message in flight per agent session), returns None while the agent has one in flight.
        """

        def run(conn: sqlite3.Connection, now: float) -> Message | None:
            if not self._owner_check(conn, now, agent, "claim", None):
                return None  # this node lost the agent: nothing to claim
            if (
                exclusive
                and conn.execute(
                    f"SELECT 1 FROM messages WHERE agent = ? AND state IN {IN_FLIGHT_SQL} LIMIT 1",
                    (agent,),
                ).fetchone()
            ):
                return None
            row = conn.execute(
                "SELECT id FROM messages AS m WHERE agent = ? AND state = 'queued'"
                " AND NOT EXISTS (SELECT 1 FROM messages AS f WHERE f.agent = m.agent"
                f"   AND f.channel = m.channel AND f.conversation = m.conversation"
                f"   AND f.state IN {IN_FLIGHT_SQL})"
                " ORDER BY priority DESC, id LIMIT 1",
                (agent,),
            ).fetchone()
            if row is None:
                return None
            claimed = conn.execute(
                "UPDATE messages SET state = 'claimed', fence = fence + 1, lease_owner = ?,"
                " lease_expires_at = ?, heartbeat_at = ?, updated_at = ?"
                " WHERE id = ? AND state = 'queued' RETURNING *",
                (owner, now + lease_seconds, now, now, row["id"]),
            ).fetchone()
            msg = message_from_row(claimed)
            insert_event(
                conn,
                now,
                owner,
                "transition",
                message_id=msg.id,
                from_state="queued",
                to_state="claimed",
                attempt=msg.attempt,
                detail=f"fence={msg.fence}",
            )
            return msg

        msg = await self._tx(run)
        if msg is not None:
            self._notify("message", [msg.id])
        return msg

    async def heartbeat(self, message_id: int, fence: int, lease_seconds: float) -> Message:
        """Extend the lease of an in-flight message (the agent is making progress)."""

        def run(conn: sqlite3.Connection, now: float) -> Message:
            if self.fences:  # fenced by an agent lease (a fleet node): checked first
                self._owner_check(conn, now, _get(conn, message_id).agent, "heartbeat", message_id)
            row = conn.execute(
                "UPDATE messages SET lease_expires_at = ?, heartbeat_at = ?"
                f" WHERE id = ? AND fence = ? AND state IN {IN_FLIGHT_SQL} RETURNING *",
                (now + lease_seconds, now, message_id, fence),
            ).fetchone()
            if row is None:
                _refuse(conn, now, message_id, fence, "heartbeat", None)
            return message_from_row(row)

        return await self._tx(run)

    # ------------------------------------------------------------------ fenced transitions

    async def mark_submitted(self, message_id: int, fence: int, actor: str = "host") -> Message:
        """Pasted and Enter pressed (weak accept)."""
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
        """Someone interrupted the turn in the pane: end it ``interrupted`` (never replayed)."""
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

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            self._owner_check(conn, now, current.agent, f"-> {to}", message_id)
            if current.fence != fence:
                _refuse(conn, now, message_id, fence, f"-> {to}", current)
            if current.state == to or (
                to in (MessageState.SUBMITTED, MessageState.ACCEPTED)
                and _rank(current.state) >= _rank(to)
            ):
                return current  # duplicate evidence (hook and transcript both report): no-op
            # A fenced move is only ever made by the lease holder, so it starts in flight: a
            # queued message (fence not handed out yet) must not be failed by a fence guess.
            if current.state not in IN_FLIGHT or to not in MESSAGE_TRANSITIONS[current.state]:
                _illegal(conn, now, current, to, actor)
            terminal = to in TERMINAL
            row = conn.execute(
                "UPDATE messages SET state = ?, updated_at = ?,"
                " reply = COALESCE(?, reply), reason = COALESCE(?, reason),"
                " lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END,"
                " lease_expires_at = CASE WHEN ? THEN NULL ELSE lease_expires_at END"
                " WHERE id = ? AND fence = ? RETURNING *",
                (to, now, reply, reason, terminal, terminal, message_id, fence),
            ).fetchone()
            transition_event(conn, now, actor, current, to, detail)
            msg = message_from_row(row)
            if to == MessageState.COMPLETED and queue_reply and reply:
                item = insert_reply(
                    conn,
                    now,
                    channel=msg.channel,
                    conversation=msg.conversation,
                    text=reply,
                    key=f"reply:{msg.id}",
                    message_id=msg.id,
                    reply_to=msg.platform_id,
                )
                outbox_ids.append(item.id)
            return msg

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        self._notify("outbox", outbox_ids)
        return msg
