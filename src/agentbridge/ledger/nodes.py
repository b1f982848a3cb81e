"""Nodes and named leases: what lets several supervisors share one ledger (a fleet).

A **node** is one running supervisor (``[fleet] node``, default the host name): it registers a
row and heartbeats it, so every node sees which others are alive. A **named lease** is owned
by one node until it expires unless renewed; each acquisition hands out a new, larger
**fencing token**. Agents are leased as ``agent:NAME`` (the owner node runs the agent) and the
singleton channels as ``leader``.

Fencing: when a store acquires or renews ``agent:NAME`` it remembers ``(node, token)`` in its
``fences``; from then on every write it makes for that agent's messages (claim, heartbeat,
submit, accept, complete, fail, interrupt, requeue, release) first reads the lease row with
that node and token in the same transaction (``FOR SHARE`` on PostgreSQL, so a takeover waits
for the write or comes after it) and is refused by the database (``OwnerLost``, recorded) when
the row no longer matches: a paused-then-resumed node cannot complete anything after another
node took its agent over. A store that never held an agent lease (the single SQLite
supervisor) writes unfenced, as before; a fleet node's store is made strict, so that it
cannot move a message of an agent it does not own at all (token 0 matches no lease).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agentbridge.ledger.base import LedgerError, StaleLease

AGENT_PREFIX = "agent:"
LEADER = "leader"
#: "agents" whose name starts so are lanes (the chat commands'): never leased, never fenced
LANE_PREFIX = "@"
#: seconds without a heartbeat after which a node is dead, unless the fleet says otherwise
NODE_TTL = 3.0


def agent_lease(agent: str) -> str:
    """The lease name of an agent's ownership."""
    return AGENT_PREFIX + agent


class NodeTaken(LedgerError):
    """Another live supervisor already runs as this node."""


class OwnerLost(StaleLease):
    """This node's agent lease was taken over (or released): its write is refused."""


@dataclass(frozen=True)
class Node:
    """One supervisor of the fleet, as its row says."""

    name: str
    instance: str  #: the supervisor's run id (host:pid:random); a restart is a new instance
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None

    def alive(self, now: float, ttl: float) -> bool:
        """Heartbeating within ``ttl`` seconds and not stopped."""
        return self.stopped_at is None and now - self.heartbeat_at <= ttl


@dataclass(frozen=True)
class Lease:
    """A named lease: its holder, fencing token and expiry (the ledger's clock)."""

    name: str
    node: str
    token: int
    expires_at: float
    acquired_at: float

    def valid(self, now: float) -> bool:
        """Not expired at ``now``."""
        return self.expires_at > now


class AgentFences:
    """The ``(node, token)`` a store's writes for each agent carry (see the module doc)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, int]] = {}
        #: a fleet node: writes for an agent it never held a lease of are refused too
        self.node: str | None = None
        #: a node whose heartbeat is older than this is dead (its ``sending`` rows recovered)
        self.node_ttl = NODE_TTL

    def note(self, lease: Lease) -> None:
        """A lease this store acquired or renewed: agent leases fence later writes."""
        if lease.name.startswith(AGENT_PREFIX):
            self._held[lease.name[len(AGENT_PREFIX) :]] = (lease.node, lease.token)

    def __bool__(self) -> bool:
        return bool(self._held) or self.node is not None

    def strict(self, node: str, node_ttl: float = 0.0) -> None:
        """From now on this store writes only for agents ``node`` holds (a fleet node), and
        reserves replies as ``node``; other nodes are dead after ``node_ttl`` seconds."""
        self.node = node
        self.node_ttl = node_ttl or NODE_TTL

    def get(self, agent: str) -> tuple[str, int] | None:
        """What writes for ``agent`` must present (None: unfenced); a strict store with no
        lease of ``agent`` presents token 0, which no lease has."""
        if agent.startswith(LANE_PREFIX):
            return None  # a lane (the chat commands'), not an agent: no lease, every node's
        held = self._held.get(agent)
        if held is None and self.node is not None:
            return (self.node, 0)
        return held


def lost_detail(agent: str, node: str, token: int, what: str) -> str:
    """The audit line and error of a refused write."""
    return f"agent {agent}: node {node} no longer holds its lease (token {token}); refused {what}"


class FleetLedger(Protocol):
    """The part of ``LedgerStore`` that nodes and leases use (both backends, one contract)."""

    #: the agent leases this store's writes present (filled by acquire/renew of ``agent:*``)
    fences: AgentFences

    async def register_node(
        self, name: str, instance: str, host: str, pid: int, ttl: float, *, force: bool = False
    ) -> Node:
        """Register a supervisor as node ``name``; ``NodeTaken`` while another instance of
        it heartbeats within ``ttl`` (``force``: the caller proved that one dead)."""
        ...

    async def node_heartbeat(self, name: str, instance: str) -> bool:
        """Refresh the heartbeat; False when another instance took the name over."""
        ...

    async def leave_node(self, name: str, instance: str) -> None:
        """A clean stop: shown stopped, not dead."""
        ...

    async def list_nodes(self) -> list[Node]:
        """Every node that ever registered, by name."""
        ...

    async def acquire_lease(
        self, name: str, node: str, seconds: float, *, takeover: bool = True
    ) -> Lease | None:
        """Own ``name`` with a new, larger fencing token: when free, already ``node``'s, or
        (``takeover``) expired; None otherwise."""
        ...

    async def renew_lease(self, name: str, node: str, token: int, seconds: float) -> Lease | None:
        """Extend a lease still held with ``token``; None when it was taken over."""
        ...

    async def release_lease(self, name: str, node: str, token: int) -> None:
        """Give a lease up now (a clean stop)."""
        ...

    async def list_leases(self) -> list[Lease]:
        """Every named lease, by name."""
        ...


def taken_detail(old: Node, now: float) -> str:
    """Why a second supervisor may not run as a live node."""
    return (
        f"node {old.name} is already running (pid {old.pid} on {old.host}, heartbeat"
        f" {now - old.heartbeat_at:.1f}s ago); give this supervisor another [fleet] node name"
    )


__all__ = [
    "AGENT_PREFIX",
    "LANE_PREFIX",
    "LEADER",
    "AgentFences",
    "FleetLedger",
    "Lease",
    "Node",
    "NodeTaken",
    "OwnerLost",
    "agent_lease",
    "lost_detail",
    "taken_detail",
]
