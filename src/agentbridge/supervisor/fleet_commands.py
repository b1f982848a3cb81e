"""Chat commands in a fleet: a command about an agent is handled by the node that runs it.

A command is a message in a lane (``commands.COMMAND_LANE``), stored by whichever node's
channel received it. In a fleet, a command that acts on one agent's session or messages
(``/stop``, ``/new``, ``/status``, ``/retry``, ``/cancel``) goes to the lane of the node
holding the agent's lease, ``@commands:NODE``; that node's center claims it, runs it against
its own worker and completes it with the answer, which the outbox takes back to the sender's
conversation (any node running that channel sends it). A pinned agent's node that is down
gets its commands when it is back (durable, like the agent's messages). Other commands
(``/agents``, ``/use``, ``/help``) and those of an agent whose lease is free go to the shared
lane, which every node claims. Lanes are not agents: they are never leased nor fenced
(``ledger.nodes.LANE_PREFIX``). With SQLite nothing changes: one node, one lane.
"""

from __future__ import annotations

from typing import Any

from agentbridge.config import Config
from agentbridge.kinds import ChangeKind
from agentbridge.ledger.nodes import agent_lease
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.supervisor.commands import COMMAND_LANE

#: the commands that act on one agent: run where the agent runs
AGENT_COMMANDS = frozenset({"stop", "new", "status", "retry", "cancel"})


def node_lane(node: str) -> str:
    """The command lane only ``node`` claims."""
    return f"{COMMAND_LANE}:{node}"


def lanes(ledger: LedgerStore) -> list[str]:
    """The lanes this store's center claims: its node's first, then the shared one."""
    node = ledger.fences.node
    return [COMMAND_LANE] if node is None else [node_lane(node), COMMAND_LANE]


async def owner_of(ledger: LedgerStore, config: Config, agent: str) -> str | None:
    """The node that runs ``agent`` now, or will (a pinned agent's node, even down); None
    when any node may take it (a relocatable agent whose lease expired, or none yet)."""
    lease = next((x for x in await ledger.list_leases() if x.name == agent_lease(agent)), None)
    if lease is not None and lease.valid(ledger.clock()):
        return lease.node
    cfg = config.agents.get(agent)
    if cfg is None or cfg.relocatable:
        return None
    return cfg.node or (lease.node if lease is not None else None)


async def routed(ledger: LedgerStore, config: Config, lane: dict[str, Any]) -> dict[str, Any]:
    """``command_lane``'s ingest keywords with the lane of the node that must handle it."""
    meta = lane.get("meta") or {}
    if lane.get("agent") != COMMAND_LANE or ledger.fences.node is None:
        return lane
    if meta.get("command") not in AGENT_COMMANDS:
        return lane
    node = await owner_of(ledger, config, str(meta.get("for_agent") or ""))
    return lane if node is None else {**lane, "agent": node_lane(node)}


async def victims(ledger: LedgerStore) -> list[Message]:
    """Commands a dead center left in flight: this node's lane's (its previous run's), and
    the shared lane's whose claimer is no live node's run (a live node is handling it)."""
    if ledger.fences.node is None:
        return await ledger.victims(agent=COMMAND_LANE)
    mine = await ledger.victims(agent=node_lane(ledger.fences.node))
    try:
        nodes = await ledger.list_nodes()
    except LedgerError:
        return mine
    now, ttl = ledger.clock(), ledger.fences.node_ttl
    live = {n.instance for n in nodes if n.alive(now, ttl)}
    shared = [
        v
        for v in await ledger.victims(agent=COMMAND_LANE)
        if (v.lease_owner or "").rsplit("/", 1)[0] not in live
    ]
    return mine + shared


async def where_runs(ledger: LedgerStore, agent: str, health: str) -> str:
    """``/agents``: an agent this node runs shows its health; in a fleet, one another node
    runs shows that node, and whether it is alive (its queue waits for it otherwise)."""
    if ledger.fences.node is None or health != "standby":
        return health
    lease = next((x for x in await ledger.list_leases() if x.name == agent_lease(agent)), None)
    if lease is None:
        return "not started on any node"
    alive = {
        n.name for n in await ledger.list_nodes() if n.alive(ledger.clock(), ledger.fences.node_ttl)
    }
    return f"on node {lease.node}" + ("" if lease.node in alive else " (down: messages wait)")


async def fleet_lines(ledger: LedgerStore) -> list[str]:
    """``/status``'s last line in a fleet: which node answered, and every node's state."""
    me = ledger.fences.node
    if me is None:
        return []
    now, ttl = ledger.clock(), ledger.fences.node_ttl
    states = [
        f"{n.name} {'alive' if n.alive(now, ttl) else 'stopped' if n.stopped_at else 'down'}"
        for n in await ledger.list_nodes()
    ]
    return [f"answered by node {me}; fleet: {', '.join(states)}"]


def wake_on_stores(ledger: LedgerStore, poke: Any) -> None:
    """A fleet's center hears commands other nodes stored for its lane (NOTIFY)."""
    if ledger.fences.node is not None:
        ledger.on_change(lambda kind, _id: poke() if kind == ChangeKind.MESSAGE else None)


__all__ = [
    "AGENT_COMMANDS",
    "lanes",
    "node_lane",
    "owner_of",
    "routed",
    "victims",
    "wake_on_stores",
]
