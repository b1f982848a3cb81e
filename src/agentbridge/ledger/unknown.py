"""Replies whose send ended ``unknown``: how they get there and the only ways out.

A reply is ``unknown`` when it may or may not have reached the platform: the bridge died while
it was ``sending``, or the platform's answer was lost after the request went out. It is never
resent blindly. A channel that can look it up reconciles it (landed: ``sent``, or on to the next
part; provably not there: ``pending`` again); otherwise a human decides
(``agentbridge outbox retry`` / ``agentbridge outbox sent``).
"""

from __future__ import annotations

import sqlite3

from agentbridge.ledger.nodes import AgentFences
from agentbridge.ledger.outbox_rows import ReplyMover, move_reply
from agentbridge.models import OutboxItem
from agentbridge.states import OutboxState

RECOVERED = "the bridge stopped while sending; not resent blindly"


def sending_of_dead(
    fences: AgentFences, now: float, own: bool, mark: str
) -> tuple[str, list[object]]:
    """The query of the ``sending`` rows a recovery may take (``mark``: the driver's
    placeholder): a row reserved by no node, by a node not alive at ``now``, or (``own``)
    by this store's node."""
    sql = "SELECT id FROM outbox WHERE state = 'sending'"
    if fences.node is None:
        return sql + " ORDER BY id", []
    alive = f"SELECT name FROM nodes WHERE stopped_at IS NULL AND heartbeat_at >= {mark}" + (
        f" AND name <> {mark}" if own else ""
    )
    params: list[object] = [now - fences.node_ttl] + ([fences.node] if own else [])
    return sql + f" AND (node IS NULL OR node NOT IN ({alive})) ORDER BY id", params


class UnknownRepliesMixin(ReplyMover):
    """The ``unknown`` part of the outbox methods of ``Ledger``."""

    async def mark_unknown(
        self, outbox_id: int, detail: str = "outcome unknown", error: str | None = None
    ) -> OutboxItem:
        """The reserved send's outcome cannot be known (its answer was lost): never resend."""
        return await self._move_reply(
            outbox_id, OutboxState.UNKNOWN, detail, error=error, only_from=OutboxState.SENDING
        )

    async def recover_sending(self, *, own: bool = True) -> list[OutboxItem]:
        """Rows a dead bridge left ``sending`` become ``unknown``: a lone store's every one
        (at its start); a fleet node's, those of dead nodes and (``own``, at its start) its
        own previous run's, never a row a live node is sending right now."""

        def run(conn: sqlite3.Connection, now: float) -> list[OutboxItem]:
            sql, params = sending_of_dead(self.fences, now, own, "?")
            return [
                move_reply(conn, now, r["id"], OutboxState.UNKNOWN, RECOVERED)
                for r in conn.execute(sql, params).fetchall()
            ]

        return await self._tx(run)

    async def resume_reply(
        self,
        outbox_id: int,
        parts_sent: int,
        platform_message_id: str | None = None,
        actor: str = "reconcile",
    ) -> OutboxItem:
        """An ``unknown`` row goes back to ``pending`` from part ``parts_sent`` (0-based).

        For a reconcile: the part in doubt landed (resume after it) or provably did not
        (resume at it). Refused unless the row is ``unknown``.
        """
        return await self._move_reply(
            outbox_id,
            OutboxState.PENDING,
            f"{actor}: resume at part {parts_sent + 1}",
            scheduled_in=0,
            platform_message_id=platform_message_id,
            only_from=OutboxState.UNKNOWN,
            parts_sent=parts_sent,
        )

    async def mark_landed(
        self, outbox_id: int, platform_message_id: str | None = None, actor: str = "human"
    ) -> OutboxItem:
        """An ``unknown`` reply did arrive (a reconcile found it, or a human saw it): ``sent``."""
        return await self._move_reply(
            outbox_id,
            OutboxState.SENT,
            f"{actor}: it arrived",
            platform_message_id=platform_message_id,
            only_from=OutboxState.UNKNOWN,
        )


__all__ = ["RECOVERED", "UnknownRepliesMixin", "sending_of_dead"]
