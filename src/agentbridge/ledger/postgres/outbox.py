"""The outbox of the PostgreSQL ledger: write-ahead replies and their delivery states.

The same rules as SQLite's (``ledger.outbox``, ``ledger.unknown``): a reply is written before
any platform call, an attempt is reserved (``sending``) in its own commit, a send in doubt is
``unknown`` and never resent without a decision. A relay claims the oldest due row ``FOR
UPDATE SKIP LOCKED``, so relays of several stores never reserve the same reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from agentbridge.ledger.base import IdempotencyConflict, IllegalTransition, NotFound, text_hash
from agentbridge.ledger.nodes import AgentFences
from agentbridge.ledger.outbox import DEFAULT_TTL
from agentbridge.ledger.postgres.sql import (
    CommitThenRaise,
    Cursor,
    insert_event,
    notify,
    reply_item,
)
from agentbridge.ledger.unknown import RECOVERED, sending_of_dead
from agentbridge.models import OutboxItem
from agentbridge.sanitize import clean_text
from agentbridge.states import OUTBOX_TRANSITIONS, OutboxState

T = TypeVar("T")


def _due(at: float, channels: Sequence[str] | None, what: str) -> tuple[str, list[object]]:
    sql = f"SELECT {what} FROM outbox WHERE state = 'pending' AND scheduled_at <= %s"
    params: list[object] = [at]
    sql += " AND expires_at > %s"
    params.append(at)
    if channels is not None:
        sql += " AND channel = ANY(%s)"
        params.append(list(channels))
    return sql + " ORDER BY scheduled_at, id LIMIT 1", params


class OutboxMixin:
    """Outbox methods of ``PostgresLedger``."""

    if TYPE_CHECKING:
        clock: Callable[[], float]
        token: str
        fences: AgentFences

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        async def _read(
            self, fn: Callable[[Cursor], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...
        def _notify(self, kind: str, ids: Iterable[int]) -> None: ...

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
        ttl: float = DEFAULT_TTL,
    ) -> OutboxItem:
        digest = text_hash(text)
        await cur.execute(
            "INSERT INTO outbox (message_id, channel, conversation, text, text_hash, idem_key,"
            " reply_to, state, scheduled_at, expires_at, created_at, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,'pending',%s,%s,%s,%s)"
            " ON CONFLICT (idem_key) DO NOTHING RETURNING *",
            (
                message_id,
                channel,
                conversation,
                text,
                digest,
                key,
                reply_to,
                scheduled_at if scheduled_at is not None else now,
                now + ttl,
                now,
                now,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute("SELECT * FROM outbox WHERE idem_key = %s", (key,))
            row = await cur.fetchone()
            assert row is not None
            if row["text_hash"] != digest:
                await insert_event(
                    cur,
                    now,
                    "outbox",
                    "idempotency_conflict",
                    message_id=row["message_id"],
                    outbox_id=row["id"],
                    detail=f"reply key {key!r} re-sent with different text",
                )
                raise CommitThenRaise(
                    IdempotencyConflict(f"reply key {key!r} already used with different text")
                )
            return reply_item(row)
        await insert_event(
            cur,
            now,
            "outbox",
            "reply_queued",
            message_id=message_id,
            outbox_id=row["id"],
            to_state="pending",
            detail=f"key={key}",
        )
        await notify(cur, self.token, "outbox", [row["id"]])
        return reply_item(row)

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
        """Write a reply ahead of sending; the same key returns the existing row."""

        async def run(cur: Cursor, now: float) -> OutboxItem:
            return await self._enqueue_in_tx(
                cur,
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

        item = await self._tx(run)
        self._notify("outbox", [item.id])
        return item

    async def claim_due_reply(
        self, channels: Sequence[str] | None = None, now: float | None = None
    ) -> OutboxItem | None:
        """Reserve the oldest due pending reply (``sending``, attempts + 1), skipping rows
        another relay is reserving."""

        async def run(cur: Cursor, tx_now: float) -> OutboxItem | None:
            sql, params = _due(tx_now if now is None else now, channels, "id")
            await cur.execute(sql + " FOR UPDATE SKIP LOCKED", params)
            row = await cur.fetchone()
            if row is None:
                return None
            to = OutboxState.SENDING
            return await self._move(cur, tx_now, row["id"], to, "send attempt", attempts_delta=1)

        return await self._tx(run)

    async def next_due_reply(
        self, now: float | None = None, channels: Sequence[str] | None = None
    ) -> OutboxItem | None:
        """Peek at the oldest due pending reply without reserving it."""

        async def run(cur: Cursor) -> OutboxItem | None:
            sql, params = _due(self.clock() if now is None else now, channels, "*")
            await cur.execute(sql, params)
            row = await cur.fetchone()
            return reply_item(row) if row else None

        return await self._read(run)

    async def reserve_send(self, outbox_id: int) -> OutboxItem:
        """Reserve one attempt of a ``pending`` row (else ``IllegalTransition``)."""
        return await self._moved(
            outbox_id,
            OutboxState.SENDING,
            "send attempt",
            attempts_delta=1,
            only_from=OutboxState.PENDING,
            announce=False,
        )

    async def next_reply_due_at(self) -> float | None:
        """When the next pending reply becomes due."""

        async def run(cur: Cursor) -> float | None:
            await cur.execute("SELECT MIN(scheduled_at) AS at FROM outbox WHERE state = 'pending'")
            row = await cur.fetchone()
            return None if row is None or row["at"] is None else float(row["at"])

        return await self._read(run)

    async def mark_sent(self, outbox_id: int, platform_message_id: str | None) -> OutboxItem:
        """The platform accepted the reply."""
        return await self._moved(
            outbox_id,
            OutboxState.SENT,
            f"platform id {platform_message_id}",
            platform_message_id=platform_message_id,
        )

    async def mark_part_sent(
        self, outbox_id: int, parts_sent: int, platform_message_id: str | None
    ) -> OutboxItem:
        """A part of a chunked reply landed: a retry resumes after it."""

        async def run(cur: Cursor, now: float) -> OutboxItem:
            await cur.execute(
                "UPDATE outbox SET parts_sent = GREATEST(parts_sent, %s), updated_at = %s,"
                " platform_message_id = COALESCE(platform_message_id, %s)"
                " WHERE id = %s AND state = 'sending' RETURNING *",
                (parts_sent, now, platform_message_id, outbox_id),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no outbox row {outbox_id} being sent")
            await insert_event(
                cur,
                now,
                "outbox",
                "part_sent",
                message_id=row["message_id"],
                outbox_id=outbox_id,
                attempt=row["attempts"],
                detail=f"part {parts_sent} sent ({platform_message_id})",
            )
            return reply_item(row)

        return await self._tx(run)

    async def mark_retry(self, outbox_id: int, error: str, delay: float) -> OutboxItem:
        """A transient failure of a ``sending`` row: ``pending`` again after ``delay``."""
        return await self._moved(
            outbox_id,
            OutboxState.PENDING,
            f"retry in {delay:.1f}s: {error}",
            error=error,
            scheduled_in=delay,
            only_from=OutboxState.SENDING,
        )

    async def mark_failed(self, outbox_id: int, error: str) -> OutboxItem:
        """A permanent failure, or retries exhausted."""
        return await self._moved(outbox_id, OutboxState.FAILED, error, error=error)

    async def retry_reply(self, outbox_id: int, actor: str = "human") -> OutboxItem:
        """Send again (a human, or a reconcile that proved it never arrived)."""
        return await self._moved(
            outbox_id,
            OutboxState.PENDING,
            f"resend requested by {actor}",
            scheduled_in=0.0,
        )

    async def expire_replies(self) -> int:
        """Pending replies past their time to live become ``expired``; returns how many."""

        async def run(cur: Cursor, now: float) -> int:
            await cur.execute(
                "SELECT id FROM outbox WHERE state = 'pending' AND expires_at <= %s"
                " ORDER BY id FOR UPDATE SKIP LOCKED",
                (now,),
            )
            ids = [r["id"] for r in await cur.fetchall()]
            for i in ids:
                await self._move(cur, now, i, OutboxState.EXPIRED, "time to live ran out")
            return len(ids)

        return await self._tx(run)

    async def mark_unknown(
        self, outbox_id: int, detail: str = "outcome unknown", error: str | None = None
    ) -> OutboxItem:
        """The reserved send's outcome cannot be known: never resent without a decision."""
        return await self._moved(
            outbox_id,
            OutboxState.UNKNOWN,
            detail,
            error=error,
            only_from=OutboxState.SENDING,
        )

    async def recover_sending(self, *, own: bool = True) -> list[OutboxItem]:
        """Rows a dead bridge left ``sending`` become ``unknown``: those of dead nodes and
        (``own``, at the start) this node's previous run's (``ledger.unknown``)."""

        async def run(cur: Cursor, now: float) -> list[OutboxItem]:
            sql, params = sending_of_dead(self.fences, now, own, "%s")
            await cur.execute(sql + " FOR UPDATE SKIP LOCKED", params)
            rows = await cur.fetchall()
            return [
                await self._move(cur, now, r["id"], OutboxState.UNKNOWN, RECOVERED) for r in rows
            ]

        return await self._tx(run)

    async def resume_reply(
        self,
        outbox_id: int,
        parts_sent: int,
        platform_message_id: str | None = None,
        actor: str = "reconcile",
    ) -> OutboxItem:
        """An ``unknown`` row goes back to ``pending`` from part ``parts_sent``."""
        return await self._moved(
            outbox_id,
            OutboxState.PENDING,
            f"{actor}: resume at part {parts_sent + 1}",
            scheduled_in=0.0,
            platform_message_id=platform_message_id,
            only_from=OutboxState.UNKNOWN,
            parts_sent=parts_sent,
        )

    async def mark_landed(
        self, outbox_id: int, platform_message_id: str | None = None, actor: str = "human"
    ) -> OutboxItem:
        """An ``unknown`` reply did arrive: ``sent``."""
        return await self._moved(
            outbox_id,
            OutboxState.SENT,
            f"{actor}: it arrived",
            platform_message_id=platform_message_id,
            only_from=OutboxState.UNKNOWN,
        )

    async def _moved(
        self,
        outbox_id: int,
        to: OutboxState,
        detail: str,
        *,
        scheduled_in: float | None = None,
        announce: bool = True,
        attempts_delta: int = 0,
        error: str | None = None,
        platform_message_id: str | None = None,
        only_from: OutboxState | None = None,
        parts_sent: int | None = None,
    ) -> OutboxItem:
        """One ``_move`` in its own transaction, announced to listeners."""

        async def run(cur: Cursor, now: float) -> OutboxItem:
            item = await self._move(
                cur,
                now,
                outbox_id,
                to,
                detail,
                scheduled_at=None if scheduled_in is None else now + scheduled_in,
                attempts_delta=attempts_delta,
                error=error,
                platform_message_id=platform_message_id,
                only_from=only_from,
                parts_sent=parts_sent,
            )
            if announce:
                await notify(cur, self.token, "outbox", [outbox_id])
            return item

        item = await self._tx(run)
        if announce:
            self._notify("outbox", [outbox_id])
        return item

    async def _move(
        self,
        cur: Cursor,
        now: float,
        outbox_id: int,
        to: OutboxState,
        detail: str,
        *,
        attempts_delta: int = 0,
        error: str | None = None,
        scheduled_at: float | None = None,
        platform_message_id: str | None = None,
        only_from: OutboxState | None = None,
        parts_sent: int | None = None,
    ) -> OutboxItem:
        await cur.execute("SELECT state FROM outbox WHERE id = %s FOR UPDATE", (outbox_id,))
        found = await cur.fetchone()
        if found is None:
            raise NotFound(f"no outbox row {outbox_id}")
        current = OutboxState(found["state"])
        if to not in OUTBOX_TRANSITIONS[current] or only_from not in (None, current):
            raise IllegalTransition(f"outbox {outbox_id}: {current} -> {to}")
        await cur.execute(
            "UPDATE outbox SET state = %s, attempts = attempts + %s, updated_at = %s,"
            " last_error = COALESCE(%s, last_error), scheduled_at = COALESCE(%s, scheduled_at),"
            " platform_message_id = COALESCE(%s, platform_message_id),"
            " parts_sent = COALESCE(%s, parts_sent), node = COALESCE(%s, node)"
            " WHERE id = %s RETURNING *",
            (
                to,
                attempts_delta,
                now,
                error,
                scheduled_at,
                platform_message_id,
                parts_sent,
                self.fences.node if to == OutboxState.SENDING else None,
                outbox_id,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        await insert_event(
            cur,
            now,
            "outbox",
            "outbox",
            message_id=row["message_id"],
            outbox_id=outbox_id,
            from_state=current,
            to_state=to,
            attempt=row["attempts"],
            detail=detail,
        )
        return reply_item(row)
