"""The reading half of the ledger: messages, audit trail, counts for ``status``, pruning.

Reads run on the connection thread in one snapshot; none of them takes the write lock except
``prune``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agentbridge.ledger.asks import PRUNABLE_ASK
from agentbridge.ledger.base import IN_FLIGHT_SQL, _get, where
from agentbridge.ledger.core import LedgerCore
from agentbridge.ledger.records import event_from_row, message_from_row
from agentbridge.ledger.replay import DEFAULT_TOMBSTONE_SECONDS, bury
from agentbridge.models import Event, Message


class ReadMixin(LedgerCore):
    """Read methods of ``Ledger``."""

    async def get(self, message_id: int) -> Message:
        """One message; raises ``NotFound``."""
        return await self._read(lambda conn: _get(conn, message_id))

    async def find(self, channel: str, key: str) -> Message | None:
        """The message with idempotency key ``(channel, key)``, if any."""

        def run(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                "SELECT * FROM messages WHERE channel = ? AND platform_id = ?", (channel, key)
            ).fetchone()
            return message_from_row(row) if row else None

        return await self._read(run)

    async def list_messages(
        self,
        state: str | None = None,
        limit: int = 1000,
        agent: str | None = None,
        conversation: str | None = None,
        channel: str | None = None,
    ) -> list[Message]:
        """Messages, newest last; filters are exact matches."""
        test, params = where(
            ("state = ?", state),
            ("agent = ?", agent),
            ("conversation = ?", conversation),
            ("channel = ?", channel),
        )
        sql = f"SELECT * FROM (SELECT * FROM messages {test} ORDER BY id DESC LIMIT ?) ORDER BY id"

        def run(conn: sqlite3.Connection) -> list[Message]:
            return [message_from_row(r) for r in conn.execute(sql, [*params, limit])]

        return await self._read(run)

    async def events_for(self, message_id: int) -> list[Event]:
        """The audit trail of one message (and of its outbox rows), oldest first."""

        def run(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT * FROM events WHERE message_id = ? OR outbox_id IN"
                " (SELECT id FROM outbox WHERE message_id = ?) ORDER BY id",
                (message_id, message_id),
            )
            return [event_from_row(r) for r in rows]

        return await self._read(run)

    async def events_since(self, after_id: int, limit: int = 500) -> list[Event]:
        """Audit rows with id > ``after_id`` (live views tail this)."""

        def run(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            return [event_from_row(r) for r in rows]

        return await self._read(run)

    async def stats(self) -> dict[str, Any]:
        """Counts for ``agentbridge status``: per agent and per state, oldest queued age."""
        now = self.clock()

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            agents: dict[str, dict[str, Any]] = {}
            for row in conn.execute(
                "SELECT agent, state, COUNT(*) AS n, MIN(created_at) AS oldest"
                " FROM messages WHERE state NOT IN ('completed', 'failed', 'interrupted')"
                " GROUP BY agent, state"
            ):
                entry = agents.setdefault(row["agent"], _agent_counts())
                if row["state"] == "queued":
                    entry["queued"] = row["n"]
                    entry["oldest_queued_age"] = round(now - row["oldest"], 3)
                elif row["state"] == "quarantined":
                    entry["quarantined"] = row["n"]
                else:
                    entry["in_flight"] += row["n"]
            for row in conn.execute(
                f"SELECT agent, COUNT(*) AS n FROM messages WHERE state IN {IN_FLIGHT_SQL}"
                " AND lease_expires_at < ? GROUP BY agent",
                (now,),
            ):
                agents.setdefault(row["agent"], _agent_counts())["stale"] = row["n"]
            states = {
                r["state"]: r["n"]
                for r in conn.execute("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
            }
            outbox = {
                r["state"]: r["n"]
                for r in conn.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            }
            return {"agents": agents, "messages": states, "outbox": outbox}

        return await self._read(run)

    async def prune(
        self, retention_seconds: float, tombstone_seconds: float = DEFAULT_TOMBSTONE_SECONDS
    ) -> tuple[int, int]:
        """Delete terminal messages/outbox rows (and their events) and settled asks
        (``PRUNABLE_ASK``) older than retention.

        A pruned message's idempotency key stays behind as a tombstone for
        ``tombstone_seconds``, so a late redelivery is still a duplicate. The newest message
        row is never pruned: SQLite hands out ``MAX(id) + 1``, and an id must never be reused
        (a tombstone, a reply key ``reply:<id>`` and API callers all name messages by id).
        """

        def run(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
            cutoff = now - retention_seconds
            # a finished message whose reply is still on its way (pending, sending, unknown)
            # keeps its row: the relay and a human reconciling it need the context
            prunable = (
                "SELECT id FROM messages AS m WHERE state IN ('completed', 'failed', 'interrupted')"
                " AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM outbox AS o"
                " WHERE o.message_id = m.id AND o.state IN ('pending', 'sending', 'unknown'))"
                " AND id < (SELECT MAX(id) FROM messages)"
            )
            bury(conn, now, prunable, cutoff, tombstone_seconds)
            conn.execute(f"DELETE FROM events WHERE message_id IN ({prunable})", (cutoff,))
            messages = conn.execute(
                f"DELETE FROM messages WHERE id IN ({prunable})", (cutoff,)
            ).rowcount
            conn.execute(
                "DELETE FROM events WHERE outbox_id IN (SELECT id FROM outbox WHERE state IN"
                " ('sent', 'failed', 'expired') AND updated_at < ?)",
                (cutoff,),
            )
            replies = conn.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'failed', 'expired')"
                " AND updated_at < ?",
                (cutoff,),
            ).rowcount
            conn.execute("DELETE FROM asks WHERE " + PRUNABLE_ASK.format(cutoff="?"), (cutoff,))
            return messages, replies

        return await self._tx(run)


def _agent_counts() -> dict[str, Any]:
    """One agent's line of ``stats`` before any row is counted."""
    return {"queued": 0, "in_flight": 0, "quarantined": 0, "stale": 0, "oldest_queued_age": None}
