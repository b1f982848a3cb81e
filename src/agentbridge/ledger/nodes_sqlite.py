"""Nodes, named leases and the agent-ownership fence of the SQLite ledger.

One SQLite ledger has one supervisor (its lock file), which never takes agent leases, so its
writes stay unfenced; the methods exist (and pass the contract) so that the store protocol is
the same on both backends. Each method is one ``BEGIN IMMEDIATE`` transaction: SQLite
serializes writers, so a read-then-write here is as atomic as PostgreSQL's single statement.
"""

from __future__ import annotations

import sqlite3

from agentbridge.ledger.base import _CommitThenRaise, insert_event
from agentbridge.ledger.core import LedgerCore
from agentbridge.ledger.nodes import (
    Lease,
    Node,
    NodeTaken,
    OwnerLost,
    agent_lease,
    lost_detail,
    taken_detail,
)


def _node(row: sqlite3.Row) -> Node:
    return Node(**{k: row[k] for k in row.keys()})  # noqa: SIM118 - sqlite3.Row


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(**{k: row[k] for k in row.keys()})  # noqa: SIM118 - sqlite3.Row


class NodesMixin(LedgerCore):
    """Node registry and named leases of ``Ledger``."""

    async def register_node(
        self, name: str, instance: str, host: str, pid: int, ttl: float, *, force: bool = False
    ) -> Node:
        """Register this supervisor as node ``name``; ``NodeTaken`` while another instance
        of it heartbeats within ``ttl`` (unless ``force``: the caller knows it is dead)."""

        def run(conn: sqlite3.Connection, now: float) -> Node:
            row = conn.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is not None and not force:
                old = _node(row)
                if old.instance != instance and old.alive(now, ttl):
                    raise NodeTaken(taken_detail(old, now))
            return _node(
                conn.execute(
                    "INSERT INTO nodes (name, instance, host, pid, started_at, heartbeat_at)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET"
                    " instance = excluded.instance, host = excluded.host, pid = excluded.pid,"
                    " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                    " stopped_at = NULL RETURNING *",
                    (name, instance, host, pid, now, now),
                ).fetchone()
            )

        return await self._tx(run)

    async def node_heartbeat(self, name: str, instance: str) -> bool:
        """Refresh this node's heartbeat; False when another instance took the name over."""

        def run(conn: sqlite3.Connection, now: float) -> bool:
            cur = conn.execute(
                "UPDATE nodes SET heartbeat_at = ? WHERE name = ? AND instance = ?",
                (now, name, instance),
            )
            return cur.rowcount == 1

        return await self._tx(run)

    async def leave_node(self, name: str, instance: str) -> None:
        """A clean stop: the node is shown stopped, not dead."""

        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "UPDATE nodes SET stopped_at = ? WHERE name = ? AND instance = ?",
                (now, name, instance),
            )

        await self._tx(run)

    async def list_nodes(self) -> list[Node]:
        """Every node that ever registered, by name."""
        return await self._read(
            lambda conn: [_node(r) for r in conn.execute("SELECT * FROM nodes ORDER BY name")]
        )

    async def acquire_lease(
        self, name: str, node: str, seconds: float, *, takeover: bool = True
    ) -> Lease | None:
        """Own lease ``name`` for ``seconds`` with a new fencing token: when it is free, or
        already ``node``'s (a restarted node), or (with ``takeover``) expired; else None."""

        def run(conn: sqlite3.Connection, now: float) -> Lease | None:
            row = conn.execute(
                "INSERT INTO leases (name, node, token, expires_at, acquired_at)"
                " VALUES (?, ?, 1, ?, ?) ON CONFLICT (name) DO UPDATE SET node = excluded.node,"
                " token = leases.token + 1, expires_at = excluded.expires_at,"
                " acquired_at = excluded.acquired_at"
                " WHERE leases.node = excluded.node OR (? AND leases.expires_at <= ?)"
                " RETURNING *",
                (name, node, now + seconds, now, takeover, now),
            ).fetchone()
            return None if row is None else _lease(row)

        return self._fenced(await self._tx(run))

    async def renew_lease(self, name: str, node: str, token: int, seconds: float) -> Lease | None:
        """Extend a lease still held with ``token`` (also just after it expired, when nobody
        took it); None when it was taken over: the holder lost it."""

        def run(conn: sqlite3.Connection, now: float) -> Lease | None:
            row = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND node = ? AND token = ?"
                " RETURNING *",
                (now + seconds, name, node, token),
            ).fetchone()
            return None if row is None else _lease(row)

        return self._fenced(await self._tx(run))

    async def release_lease(self, name: str, node: str, token: int) -> None:
        """Give a lease up now (a clean stop): another node may take it at once."""

        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND node = ? AND token = ?",
                (now, name, node, token),
            )

        await self._tx(run)

    async def list_leases(self) -> list[Lease]:
        """Every named lease, by name."""
        return await self._read(
            lambda conn: [_lease(r) for r in conn.execute("SELECT * FROM leases ORDER BY name")]
        )

    def _fenced(self, lease: Lease | None) -> Lease | None:
        if lease is not None:
            self.fences.note(lease)
        return lease

    def _owner_check(
        self, conn: sqlite3.Connection, now: float, agent: str, what: str, message_id: int | None
    ) -> bool:
        """In the caller's transaction: refuse (recorded, ``OwnerLost``) a write for ``agent``
        when this store's lease of it was taken over. False (no raise) for a claim, which
        has no message to record the refusal on."""
        held = self.fences.get(agent)
        if held is None:
            return True
        node, token = held
        if conn.execute(
            "SELECT 1 FROM leases WHERE name = ? AND node = ? AND token = ?",
            (agent_lease(agent), node, token),
        ).fetchone():
            return True
        if message_id is None:
            return False
        detail = lost_detail(agent, node, token, what)
        insert_event(conn, now, "ledger", "refused", message_id=message_id, detail=detail)
        raise _CommitThenRaise(OwnerLost(f"message {message_id}: {detail}"))


__all__ = ["NodesMixin"]
