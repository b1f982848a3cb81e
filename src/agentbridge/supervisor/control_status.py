"""The control socket's own requests about the supervisor: ``status``, ``poke``, ``restart``
and ``simulate-wake``, plus the status snapshot channels show (``/status``, the console).

Why here: ``up.py`` wires the parts; what a status contains is its own small job.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.store import LedgerStore
from agentbridge.plugin.protocols import Channel
from agentbridge.supervisor.control import Handler
from agentbridge.supervisor.dispatcher import AgentWorker
from agentbridge.supervisor.fleet import Fleet

#: an agent's counts when the ledger has none for it yet
EMPTY_COUNTS: dict[str, Any] = {
    "queued": 0,
    "in_flight": 0,
    "stale": 0,
    "quarantined": 0,
    "oldest_queued_age": None,
}


class StatusHost(Protocol):
    """What these requests read of the ``Supervisor`` (a Protocol: up.py imports this)."""

    id: str
    ledger: LedgerStore | None
    workers: dict[str, AgentWorker]
    relay: OutboxRelay | None
    started_channels: list[Channel]
    started_at: float
    wakes: int
    fleet: Fleet

    async def on_wake(self, slept: float) -> None: ...


async def snapshot(sup: StatusHost) -> dict[str, Any]:
    """Everything ``agentbridge status --json`` shows."""
    assert sup.ledger is not None
    stats = await sup.ledger.stats()
    agents: dict[str, Any] = {}
    for name, worker in sup.workers.items():
        counts = stats["agents"].get(name, {})
        agents[name] = {**EMPTY_COUNTS, **counts, **worker.snapshot()}
    return {
        "supervisor": {
            "id": sup.id,
            "pid": os.getpid(),
            "uptime": time.time() - sup.started_at,
            "wakes": sup.wakes,
            "channels": [c.name for c in sup.started_channels],
        },
        "agents": agents,
        **await sup.fleet.snapshot(),
        "messages": stats["messages"],
        "outbox": stats["outbox"],
    }


def handlers(sup: StatusHost) -> dict[str, Handler]:
    """The four requests, bound to one supervisor."""

    async def poke(request: dict[str, Any]) -> dict[str, Any]:
        for worker in sup.workers.values():
            worker.poke()
        if sup.relay is not None:
            sup.relay.poke()
        return {}

    async def simulate_wake(request: dict[str, Any]) -> dict[str, Any]:
        """Run the wake path as if the host had slept (the detector's own tests cover the
        clocks; this lets an end-to-end test and a curious user exercise the reaction)."""
        await sup.on_wake(float(request.get("slept", 60.0)))
        return {"wakes": sup.wakes}

    async def status(request: dict[str, Any]) -> dict[str, Any]:
        return await snapshot(sup)

    async def restart(request: dict[str, Any]) -> dict[str, Any]:
        worker = sup.workers.get(str(request.get("agent")))
        if worker is None:
            return {"ok": False, "error": f"no agent {request.get('agent')!r}"}
        await worker.human_restart()
        return {}

    return {"poke": poke, "status": status, "restart": restart, "simulate-wake": simulate_wake}
