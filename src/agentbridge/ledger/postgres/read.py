"""Reads, victims, counts for ``status``, retention and nonces of the PostgreSQL ledger.

Reads are single statements in autocommit mode, except ``stats``, whose counts come from one
repeatable-read snapshot so that they add up while other stores write. Retention keeps a
tombstone of every pruned idempotency key, as SQLite's does (``ledger.replay``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agentbridge.ledger.asks import PRUNABLE_ASK
from agentbridge.ledger.base import NotFound
from agentbridge.ledger.postgres import tail
from agentbridge.ledger.postgres.sql import IN_FLIGHT_SQL, Cursor, message, reply_item
from agentbridge.ledger.records import event_from_row
from agentbridge.ledger.replay import DEFAULT_TOMBSTONE_SECONDS
from agentbridge.models import Event, Message, OutboxItem

T = TypeVar("T")

#: finished messages old enough to prune whose reply is not still on its way
_PRUNABLE = (
    "SELECT id FROM messages AS m WHERE state IN ('completed', 'failed', 'interrupted')"
    " AND updated_at < %(cutoff)s AND NOT EXISTS (SELECT 1 FROM outbox AS o"
    " WHERE o.message_id = m.id AND o.state IN ('pending', 'sending', 'unknown'))"
)


def _entry() -> dict[str, Any]:
    return {"queued": 0, "in_flight": 0, "quarantined": 0, "stale": 0, "oldest_queued_age": None}


class ReadMixin:
    """Read, retention and nonce methods of ``PostgresLedger``."""

    if TYPE_CHECKING:
        clock: Callable[[], float]
        tail_stats: tail.TailStats

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        async def _read(
            self, fn: Callable[[Cursor], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def get(self, message_id: int) -> Message:
        """One message; raises ``NotFound``."""

        async def run(cur: Cursor) -> Message:
            await cur.execute("SELECT * FROM messages WHERE id = %s", (message_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            return message(row)

        return await self._read(run)

    async def find(self, channel: str, key: str) -> Message | None:
        """The message with idempotency key ``(channel, key)``, if any."""

        async def run(cur: Cursor) -> Message | None:
            await cur.execute(
                "SELECT * FROM messages WHERE channel = %s AND platform_id = %s", (channel, key)
            )
            row = await cur.fetchone()
            return message(row) if row else None

        return await self._read(run)

    async def list_messages(
        self,
        state: str | None = None,
        limit: int = 1000,
        agent: str | None = None,
        conversation: str | None = None,
        channel: str | None = None,
    ) -> list[Message]:
        """The newest ``limit`` messages matching every filter given, oldest first."""
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("state", state),
            ("agent", agent),
            ("conversation", conversation),
            ("channel", channel),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT * FROM (SELECT * FROM messages {where} ORDER BY id DESC LIMIT %s) AS newest"
            " ORDER BY id"
        )

        async def run(cur: Cursor) -> list[Message]:
            await cur.execute(sql, [*params, limit])
            return [message(r) for r in await cur.fetchall()]

        return await self._read(run)

    async def events_for(self, message_id: int) -> list[Event]:
        """The audit trail of one message and of its replies, oldest first."""

        async def run(cur: Cursor) -> list[Event]:
            await cur.execute(
                "SELECT * FROM events WHERE message_id = %s OR outbox_id IN"
                " (SELECT id FROM outbox WHERE message_id = %s) ORDER BY id",
                (message_id, message_id),
            )
            return [event_from_row(cast(Any, r)) for r in await cur.fetchall()]

        return await self._read(run)

    async def events_since(self, after_id: int, limit: int = 500) -> list[Event]:
        """Audit rows with id > ``after_id``, oldest first; never one ahead of an id that a
        transaction still in progress holds (``tail``: a cursor past it would skip it)."""

        async def run(cur: Cursor) -> list[Event]:
            return await tail.events_since(cur, after_id, limit, self.tail_stats)

        return await self._read(run)

    async def get_reply(self, outbox_id: int) -> OutboxItem:
        """One outbox row; raises ``NotFound``."""

        async def run(cur: Cursor) -> OutboxItem:
            await cur.execute("SELECT * FROM outbox WHERE id = %s", (outbox_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no outbox row {outbox_id}")
            return reply_item(row)

        return await self._read(run)

    async def list_replies(
        self, state: str | None = None, message_id: int | None = None, limit: int = 1000
    ) -> list[OutboxItem]:
        """Outbox rows, oldest first."""
        clauses: list[str] = []
        params: list[object] = []
        if state is not None:
            clauses.append("state = %s")
            params.append(state)
        if message_id is not None:
            clauses.append("message_id = %s")
            params.append(message_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

        async def run(cur: Cursor) -> list[OutboxItem]:
            await cur.execute(
                f"SELECT * FROM outbox {where} ORDER BY id LIMIT %s", [*params, limit]
            )
            return [reply_item(r) for r in await cur.fetchall()]

        return await self._read(run)

    async def victims(
        self,
        owner: str | None = None,
        expired_before: float | None = None,
        agent: str | None = None,
    ) -> list[Message]:
        """In-flight messages of a dead session (by owner / agent) or with expired leases,
        oldest first: the replay order."""
        clauses: list[str] = [f"state IN {IN_FLIGHT_SQL}"]
        params: list[object] = []
        for clause, value in (
            ("lease_owner = %s", owner),
            ("agent = %s", agent),
            ("lease_expires_at < %s", expired_before),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        sql = f"SELECT * FROM messages WHERE {' AND '.join(clauses)} ORDER BY id"

        async def run(cur: Cursor) -> list[Message]:
            await cur.execute(sql, params)
            return [message(r) for r in await cur.fetchall()]

        return await self._read(run)

    async def stats(self) -> dict[str, Any]:
        """Counts for ``status``: per agent and per state, the oldest queued age."""
        now = self.clock()

        async def run(cur: Cursor) -> dict[str, Any]:
            agents: dict[str, dict[str, Any]] = {}
            await cur.execute(
                "SELECT agent, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM messages"
                " WHERE state NOT IN ('completed', 'failed', 'interrupted') GROUP BY agent, state"
            )
            for row in await cur.fetchall():
                entry = agents.setdefault(row["agent"], _entry())
                if row["state"] == "queued":
                    entry["queued"] = row["n"]
                    entry["oldest_queued_age"] = round(now - row["oldest"], 3)
                elif row["state"] == "quarantined":
                    entry["quarantined"] = row["n"]
                else:
                    entry["in_flight"] += row["n"]
            await cur.execute(
                f"SELECT agent, COUNT(*) AS n FROM messages WHERE state IN {IN_FLIGHT_SQL}"
                " AND lease_expires_at < %s GROUP BY agent",
                (now,),
            )
            for row in await cur.fetchall():
                agents.setdefault(row["agent"], _entry())["stale"] = row["n"]
            await cur.execute("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
            states = {r["state"]: r["n"] for r in await cur.fetchall()}
            await cur.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            outbox = {r["state"]: r["n"] for r in await cur.fetchall()}
            return {"agents": agents, "messages": states, "outbox": outbox}

        return await self._read(run, snapshot=True)

    async def prune(
        self, retention_seconds: float, tombstone_seconds: float = DEFAULT_TOMBSTONE_SECONDS
    ) -> tuple[int, int]:
        """Retention: delete finished messages and replies older than ``retention_seconds``
        (keys stay as tombstones for ``tombstone_seconds``); returns (messages, replies).
        Identity ids are never handed out again, so (unlike SQLite) the newest row may go."""

        async def run(cur: Cursor, now: float) -> tuple[int, int]:
            p = {"cutoff": now - retention_seconds, "now": now, "keep": now - tombstone_seconds}
            await cur.execute(
                "INSERT INTO idempotency_tombstones (channel, idem_key, text_hash, message_id,"
                " final_state, pruned_at) SELECT channel, platform_id, text_hash, id, state,"
                f" %(now)s FROM messages WHERE platform_id IS NOT NULL AND id IN ({_PRUNABLE})"
                " ON CONFLICT (channel, idem_key) DO UPDATE SET text_hash = EXCLUDED.text_hash,"
                " message_id = EXCLUDED.message_id, final_state = EXCLUDED.final_state,"
                " pruned_at = EXCLUDED.pruned_at",
                p,
            )
            await cur.execute("DELETE FROM idempotency_tombstones WHERE pruned_at < %(keep)s", p)
            await cur.execute(
                "DELETE FROM events WHERE message_id IS NULL AND outbox_id IS NULL"
                " AND at < %(cutoff)s",
                p,
            )
            await cur.execute("DELETE FROM seen_nonces WHERE expires_at < %(now)s", p)
            await cur.execute(f"DELETE FROM events WHERE message_id IN ({_PRUNABLE})", p)
            await cur.execute(f"DELETE FROM messages WHERE id IN ({_PRUNABLE})", p)
            messages = cur.rowcount
            done = "('sent', 'failed', 'expired')"
            await cur.execute(
                "DELETE FROM events WHERE outbox_id IN (SELECT id FROM outbox WHERE state IN"
                f" {done} AND updated_at < %(cutoff)s)",
                p,
            )
            await cur.execute(
                f"DELETE FROM outbox WHERE state IN {done} AND updated_at < %(cutoff)s", p
            )
            replies = cur.rowcount
            asks = PRUNABLE_ASK.format(cutoff="%(cutoff)s")
            await cur.execute(f"DELETE FROM asks WHERE {asks}", p)
            return messages, replies

        return await self._tx(run)

    async def claim_nonce(self, scope: str, nonce: str, expires_at: float) -> bool:
        """Record ``nonce`` as used until ``expires_at``; False when it was used already."""

        async def run(cur: Cursor, now: float) -> bool:
            await cur.execute("DELETE FROM seen_nonces WHERE expires_at < %s", (now,))
            await cur.execute(
                "INSERT INTO seen_nonces (scope, nonce, expires_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (scope, nonce) DO NOTHING",
                (scope, nonce, expires_at),
            )
            return cur.rowcount == 1

        return await self._tx(run)
