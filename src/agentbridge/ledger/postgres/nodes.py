"""Nodes, named leases and the agent-ownership fence of the PostgreSQL ledger.

The fleet's coordination lives in two tables (``nodes``, ``leases``; see ``ledger/nodes.py``
for the rules). An acquisition is one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` statement, so
two nodes racing for an expired lease cannot both win: the row lock makes the second see the
first's new token and its WHERE fail. A fenced write reads its lease row ``FOR SHARE`` in its
own transaction, so a takeover (an UPDATE of that row) waits until the write commits, or the
write sees the new token and is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from psycopg.rows import DictRow

from agentbridge.ledger.nodes import (
    AgentFences,
    Lease,
    Node,
    NodeTaken,
    OwnerLost,
    agent_lease,
    lost_detail,
    taken_detail,
)
from agentbridge.ledger.postgres.sql import CommitThenRaise, Cursor, insert_event

T = TypeVar("T")


def _node(row: DictRow) -> Node:
    return Node(**row)


def _lease(row: DictRow) -> Lease:
    return Lease(**row)


_ACQUIRE = (
    "INSERT INTO leases (name, node, token, expires_at, acquired_at)"
    " VALUES (%(name)s, %(node)s, 1, %(expires)s, %(now)s)"
    " ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, token = leases.token + 1,"
    " expires_at = EXCLUDED.expires_at, acquired_at = EXCLUDED.acquired_at"
    " WHERE leases.node = EXCLUDED.node OR (%(takeover)s AND leases.expires_at <= %(now)s)"
    " RETURNING *"
)


class NodesMixin:
    """Node registry and named leases of ``PostgresLedger``."""

    fences: AgentFences

    if TYPE_CHECKING:

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        async def _read(
            self, fn: Callable[[Cursor], Awaitable[T]], *, snapshot: bool = False
        ) -> T: ...

    async def register_node(
        self, name: str, instance: str, host: str, pid: int, ttl: float, *, force: bool = False
    ) -> Node:
        """Register this supervisor as node ``name``; ``NodeTaken`` while another instance
        of it heartbeats within ``ttl`` (unless ``force``: the caller knows it is dead)."""

        async def run(cur: Cursor, now: float) -> Node:
            await cur.execute("SELECT * FROM nodes WHERE name = %s FOR UPDATE", (name,))
            row = await cur.fetchone()
            if row is not None and not force:
                old = _node(row)
                if old.instance != instance and old.alive(now, ttl):
                    raise NodeTaken(taken_detail(old, now))
            await cur.execute(
                "INSERT INTO nodes (name, instance, host, pid, started_at, heartbeat_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
                " instance = EXCLUDED.instance, host = EXCLUDED.host, pid = EXCLUDED.pid,"
                " started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,"
                " stopped_at = NULL RETURNING *",
                (name, instance, host, pid, now, now),
            )
            return _node(await _one(cur))

        return await self._tx(run)

    async def node_heartbeat(self, name: str, instance: str) -> bool:
        """Refresh this node's heartbeat; False when another instance took the name over."""

        async def run(cur: Cursor, now: float) -> bool:
            await cur.execute(
                "UPDATE nodes SET heartbeat_at = %s WHERE name = %s AND instance = %s",
                (now, name, instance),
            )
            return cur.rowcount == 1

        return await self._tx(run)

    async def leave_node(self, name: str, instance: str) -> None:
        """A clean stop: the node is shown stopped, not dead."""

        async def run(cur: Cursor, now: float) -> None:
            await cur.execute(
                "UPDATE nodes SET stopped_at = %s WHERE name = %s AND instance = %s",
                (now, name, instance),
            )

        await self._tx(run)

    async def list_nodes(self) -> list[Node]:
        """Every node that ever registered, by name."""

        async def run(cur: Cursor) -> list[Node]:
            await cur.execute("SELECT * FROM nodes ORDER BY name")
            return [_node(r) for r in await cur.fetchall()]

        return await self._read(run)

    async def acquire_lease(
        self, name: str, node: str, seconds: float, *, takeover: bool = True
    ) -> Lease | None:
        """Own lease ``name`` for ``seconds`` with a new fencing token: when it is free, or
        already ``node``'s (a restarted node), or (with ``takeover``) expired; else None."""

        async def run(cur: Cursor, now: float) -> Lease | None:
            params = {
                "name": name,
                "node": node,
                "expires": now + seconds,
                "now": now,
                "takeover": takeover,
            }
            await cur.execute(_ACQUIRE, params)
            row = await cur.fetchone()
            return None if row is None else _lease(row)

        return self._fenced(await self._tx(run))

    async def renew_lease(self, name: str, node: str, token: int, seconds: float) -> Lease | None:
        """Extend a lease still held with ``token`` (also just after it expired, when nobody
        took it); None when it was taken over: the holder lost it."""

        async def run(cur: Cursor, now: float) -> Lease | None:
            await cur.execute(
                "UPDATE leases SET expires_at = %s WHERE name = %s AND node = %s AND token = %s"
                " RETURNING *",
                (now + seconds, name, node, token),
            )
            row = await cur.fetchone()
            return None if row is None else _lease(row)

        return self._fenced(await self._tx(run))

    async def release_lease(self, name: str, node: str, token: int) -> None:
        """Give a lease up now (a clean stop): another node may take it at once."""

        async def run(cur: Cursor, now: float) -> None:
            await cur.execute(
                "UPDATE leases SET expires_at = %s WHERE name = %s AND node = %s AND token = %s",
                (now, name, node, token),
            )

        await self._tx(run)

    async def list_leases(self) -> list[Lease]:
        """Every named lease, by name."""

        async def run(cur: Cursor) -> list[Lease]:
            await cur.execute("SELECT * FROM leases ORDER BY name")
            return [_lease(r) for r in await cur.fetchall()]

        return await self._read(run)

    def _fenced(self, lease: Lease | None) -> Lease | None:
        if lease is not None:
            self.fences.note(lease)
        return lease

    async def _owner_check(
        self, cur: Cursor, now: float, agent: str, what: str, message_id: int | None
    ) -> bool:
        """In the caller's transaction: refuse (recorded, ``OwnerLost``) a write for ``agent``
        when this store's lease of it was taken over. False (no raise) for a claim, which
        has no message to record the refusal on."""
        held = self.fences.get(agent)
        if held is None:
            return True
        node, token = held
        await cur.execute(
            "SELECT 1 FROM leases WHERE name = %s AND node = %s AND token = %s FOR SHARE",
            (agent_lease(agent), node, token),
        )
        if await cur.fetchone() is not None:
            return True
        if message_id is None:
            return False
        detail = lost_detail(agent, node, token, what)
        await insert_event(cur, now, "ledger", "refused", message_id=message_id, detail=detail)
        raise CommitThenRaise(OwnerLost(f"message {message_id}: {detail}"))


async def _one(cur: Cursor) -> DictRow:
    row = await cur.fetchone()
    assert row is not None, "RETURNING gives the row"
    return row


__all__ = ["NodesMixin"]
