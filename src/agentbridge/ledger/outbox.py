"""The outbox half of the ledger: write-ahead reply rows and their delivery states.

A reply is written before any platform is called; an attempt is reserved (``sending``) in its
own transaction before the call; a crash while ``sending`` leaves the row ``unknown`` at the next
start, and an unknown row is never resent without a decision (reconcile or a human).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Sequence

from agentbridge.ledger.base import where
from agentbridge.ledger.outbox_rows import DEFAULT_TTL, insert_reply, move_reply
from agentbridge.ledger.records import outbox_from_row
from agentbridge.ledger.unknown import UnknownRepliesMixin
from agentbridge.models import OutboxItem
from agentbridge.sanitize import clean_text
from agentbridge.states import OutboxState

DEFAULT_BACKOFF: tuple[float, ...] = (5.0, 25.0, 120.0, 600.0)


def backoff_delay(
    attempts: int,
    schedule: Sequence[float] = DEFAULT_BACKOFF,
    jitter: float = 0.2,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempts`` (1-based): schedule, capped at its last step,
    ±``jitter`` so many failed replies do not retry in lockstep."""
    base = schedule[min(max(attempts, 1), len(schedule)) - 1]
    return base * (1 - jitter + 2 * jitter * rng())


class OutboxMixin(UnknownRepliesMixin):
    """Outbox methods of ``Ledger`` (kept apart so each file has one job)."""

    async def enqueue_reply(
        self,
        channel: str,
        conversation: str,
        text: str,
        key: str,
        message_id: int | None = None,
        reply_to: str | None = None,
        scheduled_at: float | None = None,
        ttl: float = DEFAULT_TTL,
    ) -> OutboxItem:
        """Write a reply ahead of sending; the same key returns the existing row (no resend)."""
        item = await self._tx(
            lambda conn, now: insert_reply(
                conn,
                now,
                channel=channel,
                conversation=conversation,
                text=clean_text(text),
                key=clean_text(key),
                message_id=message_id,
                reply_to=reply_to,
                scheduled_at=scheduled_at,
                ttl=ttl,
            )
        )
        self._notify("outbox", [item.id])
        return item

    async def claim_due_reply(
        self, channels: Sequence[str] | None = None, now: float | None = None
    ) -> OutboxItem | None:
        """Reserve the oldest due pending reply: ``sending``, attempts + 1, committed first."""

        def run(conn: sqlite3.Connection, tx_now: float) -> OutboxItem | None:
            sql, params = _due_query(tx_now if now is None else now, channels)
            row = conn.execute(sql, params).fetchone()
            if row is None:
                return None
            return move_reply(
                conn,
                tx_now,
                row["id"],
                OutboxState.SENDING,
                "send attempt",
                attempts_delta=1,
                node=self.fences.node,
            )

        return await self._tx(run)

    async def next_due_reply(
        self, now: float | None = None, channels: Sequence[str] | None = None
    ) -> OutboxItem | None:
        """Peek at the oldest due pending reply without reserving it (see ``reserve_send``)."""

        def run(conn: sqlite3.Connection) -> OutboxItem | None:
            at = self.clock() if now is None else now
            sql, params = _due_query(at, channels)
            row = conn.execute(sql.replace("SELECT id", "SELECT *", 1), params).fetchone()
            return outbox_from_row(row) if row else None

        return await self._read(run)

    async def reserve_send(self, outbox_id: int) -> OutboxItem:
        """Reserve one send attempt (``sending``, attempts + 1), committed before the call.

        Refused (``IllegalTransition``) unless the row is ``pending``: two relays cannot both
        reserve it, and an ``unknown`` row is never resent without a decision.
        """
        return await self._tx(
            lambda conn, now: move_reply(
                conn,
                now,
                outbox_id,
                OutboxState.SENDING,
                "send attempt",
                attempts_delta=1,
                only_from=OutboxState.PENDING,
                node=self.fences.node,
            )
        )

    async def next_reply_due_at(self) -> float | None:
        """When the next pending reply becomes due (the relay sleeps until then)."""

        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(scheduled_at) AS at FROM outbox WHERE state = 'pending'"
            ).fetchone()
            return row["at"] if row and row["at"] is not None else None

        return await self._read(run)

    async def mark_sent(self, outbox_id: int, platform_message_id: str | None) -> OutboxItem:
        """The platform accepted the reply."""
        return await self._move_reply(
            outbox_id,
            OutboxState.SENT,
            f"platform id {platform_message_id}",
            platform_message_id=platform_message_id,
        )

    async def mark_part_sent(
        self, outbox_id: int, parts_sent: int, platform_message_id: str | None
    ) -> OutboxItem:
        """A part of a chunked reply reached the platform: a retry resumes after it."""

        def run(conn: sqlite3.Connection, now: float) -> OutboxItem:
            from agentbridge.ledger.base import NotFound, insert_event

            row = conn.execute(
                "UPDATE outbox SET parts_sent = MAX(parts_sent, ?), updated_at = ?,"
                " platform_message_id = COALESCE(platform_message_id, ?)"
                " WHERE id = ? AND state = 'sending' RETURNING *",
                (parts_sent, now, platform_message_id, outbox_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no outbox row {outbox_id} being sent")
            insert_event(
                conn,
                now,
                "outbox",
                "part_sent",
                message_id=row["message_id"],
                outbox_id=outbox_id,
                attempt=row["attempts"],
                detail=f"part {parts_sent} sent ({platform_message_id})",
            )
            return outbox_from_row(row)

        return await self._tx(run)

    async def mark_retry(self, outbox_id: int, error: str, delay: float) -> OutboxItem:
        """A transient failure of the reserved attempt: back to ``pending`` after ``delay``.

        Only a ``sending`` row can be retried this way: a late retry must not revive a reply
        that already failed for good or whose outcome is unknown (``retry_reply`` is the
        deliberate way back).
        """
        return await self._move_reply(
            outbox_id,
            OutboxState.PENDING,
            f"retry in {delay:.1f}s: {error}",
            error=error,
            scheduled_in=delay,
            only_from=OutboxState.SENDING,
        )

    async def mark_failed(self, outbox_id: int, error: str) -> OutboxItem:
        """A permanent failure, or retries exhausted."""
        return await self._move_reply(outbox_id, OutboxState.FAILED, error, error=error)

    async def retry_reply(self, outbox_id: int, actor: str = "human") -> OutboxItem:
        """A human (or a reconcile that proved it never arrived) asks to send again."""
        return await self._move_reply(
            outbox_id, OutboxState.PENDING, f"resend requested by {actor}", scheduled_in=0
        )

    async def expire_replies(self) -> int:
        """Pending replies past their time to live become ``expired``."""

        def run(conn: sqlite3.Connection, now: float) -> int:
            ids = [
                r["id"]
                for r in conn.execute(
                    "SELECT id FROM outbox WHERE state = 'pending' AND expires_at <= ?", (now,)
                )
            ]
            for i in ids:
                move_reply(conn, now, i, OutboxState.EXPIRED, "time to live ran out")
            return len(ids)

        return await self._tx(run)

    async def get_reply(self, outbox_id: int) -> OutboxItem:
        """One outbox row."""
        from agentbridge.ledger.base import NotFound

        def run(conn: sqlite3.Connection) -> OutboxItem:
            row = conn.execute("SELECT * FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no outbox row {outbox_id}")
            return outbox_from_row(row)

        return await self._read(run)

    async def list_replies(
        self, state: str | None = None, message_id: int | None = None, limit: int = 1000
    ) -> list[OutboxItem]:
        """Outbox rows, oldest first."""
        test, params = where(("state = ?", state), ("message_id = ?", message_id))

        def run(conn: sqlite3.Connection) -> list[OutboxItem]:
            return [
                outbox_from_row(r)
                for r in conn.execute(
                    f"SELECT * FROM outbox {test} ORDER BY id LIMIT ?", [*params, limit]
                )
            ]

        return await self._read(run)


def _due_query(at: float, channels: Sequence[str] | None) -> tuple[str, list[object]]:
    """The oldest pending reply due at ``at`` and not expired (optionally of some channels)."""
    sql = "SELECT id FROM outbox WHERE state = 'pending' AND scheduled_at <= ? AND expires_at > ?"
    params: list[object] = [at, at]
    if channels is not None:
        sql += f" AND channel IN ({','.join('?' * len(channels))})"
        params.extend(channels)
    return sql + " ORDER BY scheduled_at, id LIMIT 1", params


__all__ = ["DEFAULT_BACKOFF", "DEFAULT_TTL", "OutboxMixin", "backoff_delay"]
