"""Replies whose send ended ``unknown``: how they get there and the only ways out.

A reply is ``unknown`` when it may or may not have reached the platform: the bridge died while
it was ``sending``, or the platform's answer was lost after the request went out. It is never
resent blindly. A channel that can look it up reconciles it (landed: ``sent``, or on to the next
part; provably not there: ``pending`` again); otherwise a human decides
(``agentbridge outbox retry`` / ``agentbridge outbox sent``).
"""

from __future__ import annotations

import sqlite3

from agentbridge.ledger.outbox_rows import ReplyMover, move_reply
from agentbridge.models import OutboxItem
from agentbridge.states import OutboxState


class UnknownRepliesMixin(ReplyMover):
    """The ``unknown`` part of the outbox methods of ``Ledger``."""

    async def mark_unknown(
        self, outbox_id: int, detail: str = "outcome unknown", error: str | None = None
    ) -> OutboxItem:
        """The reserved send's outcome cannot be known (its answer was lost): never resend."""
        return await self._move_reply(
            outbox_id, OutboxState.UNKNOWN, detail, error=error, only_from=OutboxState.SENDING
        )

    async def recover_sending(self) -> list[OutboxItem]:
        """At startup: every row left ``sending`` by a dead bridge becomes ``unknown``."""

        def run(conn: sqlite3.Connection, now: float) -> list[OutboxItem]:
            ids = [r["id"] for r in conn.execute("SELECT id FROM outbox WHERE state = 'sending'")]
            return [
                move_reply(
                    conn,
                    now,
                    i,
                    OutboxState.UNKNOWN,
                    "the bridge stopped while sending; not resent blindly",
                )
                for i in ids
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


__all__ = ["UnknownRepliesMixin"]
