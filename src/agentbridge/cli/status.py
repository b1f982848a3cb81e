"""``agentbridge status``: live from the supervisor when it runs, from the ledger otherwise."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agentbridge.config import Config
from agentbridge.ledger.store import open_ledger
from agentbridge.supervisor.control import request
from agentbridge.supervisor.fleet_config import fleet_config
from agentbridge.supervisor.fleet_status import fleet_view, render_nodes


async def collect(config: Config) -> dict[str, Any]:
    """The status snapshot; ``supervisor`` is None when no supervisor answers."""
    live = await request(config, "status", timeout=3.0)
    if live is not None and live.get("ok"):
        live.pop("ok", None)
        return live
    ledger = await open_ledger(config.ledger.target, synchronous=config.ledger.synchronous)
    try:
        stats = await ledger.stats()
        fleet = await fleet_view(ledger, fleet_config(config).node_ttl)
    finally:
        await ledger.close()
    agents: dict[str, Any] = {}
    for name, agent in config.agents.items():
        counts = stats["agents"].get(name, {})
        agents[name] = {
            "runtime": agent.runtime,
            "health": "not running",
            "detail": "",
            "queued": 0,
            "in_flight": 0,
            "stale": 0,
            "quarantined": 0,
            "oldest_queued_age": None,
            **counts,
        }
    return {
        "supervisor": None,
        "agents": agents,
        **fleet,
        "messages": stats["messages"],
        "outbox": stats["outbox"],
    }


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "-"
    return f"{age:.0f}s" if age < 120 else f"{age / 60:.0f}m"


def render(snapshot: dict[str, Any]) -> str:
    """A readable table."""
    lines = []
    sup = snapshot.get("supervisor")
    if sup:
        lines.append(
            f"supervisor pid {sup['pid']}, up {sup['uptime']:.0f}s, "
            f"channels: {', '.join(sup.get('channels', [])) or '-'}"
        )
    else:
        lines.append("supervisor: not running (start it with `agentbridge up`)")
    lines.append(
        f"{'AGENT':<14}{'RUNTIME':<12}{'HEALTH':<12}{'QUEUED':>7}{'OLDEST':>8}"
        f"{'FLIGHT':>7}{'STALE':>6}{'VICT':>5}{'QUAR':>5}{'RESTARTS':>9}  DETAIL"
    )
    for name, a in snapshot["agents"].items():
        lines.append(
            f"{name:<14}{a.get('runtime', ''):<12}{a.get('health', ''):<12}{a['queued']:>7}"
            f"{_fmt_age(a.get('oldest_queued_age')):>8}{a['in_flight']:>7}{a['stale']:>6}"
            f"{a.get('victims', 0):>5}"
            f"{a['quarantined']:>5}{a.get('restarts', 0):>9}  {a.get('detail', '')}"
        )
    lines.extend(render_nodes(snapshot))
    counts = snapshot.get("messages", {})
    lines.append(
        "messages: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    )
    outbox = snapshot.get("outbox", {})
    lines.append("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(outbox.items())) or "empty"))
    if outbox.get("unknown"):
        lines.append(
            f"  {outbox['unknown']} repl{'y' if outbox['unknown'] == 1 else 'ies'} may or may not"
            " have arrived (not resent): `agentbridge outbox --state unknown`"
        )
    return "\n".join(lines)


def run_status(config: Config, as_json: bool = False) -> int:
    """Print the status; exit 0."""
    snapshot = asyncio.run(collect(config))
    print(json.dumps(snapshot, indent=2, default=str) if as_json else render(snapshot))
    return 0
