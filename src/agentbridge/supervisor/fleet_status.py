"""The fleet as ``status`` shows it: every node (alive or dead by heartbeat age) and lease."""

from __future__ import annotations

from typing import Any

from agentbridge.ledger.nodes import AGENT_PREFIX, LEADER
from agentbridge.ledger.store import LedgerStore


async def fleet_view(ledger: LedgerStore, ttl: float) -> dict[str, Any]:
    """``nodes`` and ``leases`` for ``status --json``, ages by the ledger's clock."""
    now = ledger.clock()
    leases = await ledger.list_leases()
    nodes = []
    for node in await ledger.list_nodes():
        held = [x for x in leases if x.node == node.name and x.valid(now)]
        nodes.append(
            {
                "name": node.name,
                "host": node.host,
                "pid": node.pid,
                "started_at": node.started_at,
                "heartbeat_age": round(now - node.heartbeat_at, 3),
                "state": (
                    "stopped"
                    if node.stopped_at is not None
                    else "alive"
                    if node.alive(now, ttl)
                    else "dead"
                ),
                "leader": any(x.name == LEADER for x in held),
                "agents": [x.name[len(AGENT_PREFIX) :] for x in held if x.name != LEADER],
            }
        )
    return {
        "nodes": nodes,
        "leases": [
            {
                "name": x.name,
                "node": x.node,
                "token": x.token,
                "expires_in": round(x.expires_at - now, 3),
            }
            for x in leases
        ],
    }


def render_nodes(snapshot: dict[str, Any]) -> list[str]:
    """Lines of the ``status`` table (none for a lone SQLite node that never registered)."""
    nodes = snapshot.get("nodes") or []
    if not nodes:
        return []
    lines = [f"{'NODE':<16}{'STATE':<9}{'HEARTBEAT':>10}  {'HOST':<20}{'PID':>8}  AGENTS"]
    for n in nodes:
        name = n["name"] + (" *" if n.get("leader") else "")
        lines.append(
            f"{name:<16}{n['state']:<9}{n['heartbeat_age']:>9.1f}s  {n['host']:<20}"
            f"{n['pid']:>8}  {', '.join(n['agents']) or '-'}"
        )
    lines.append("(* = leader: runs the singleton channels)")
    return lines


__all__ = ["fleet_view", "render_nodes"]
