"""``[fleet]``: this supervisor's node name and the lease timings of a shared ledger.

Read from ``Config.fleet`` (the raw table) when ``up`` starts, so that config.py only carries
it. The lease is the failover floor: a dead node's agents and leadership move once its leases
expire (``lease_seconds`` after its last renewal), so it is short by default; a renewal runs
every ``heartbeat_seconds`` (a third of the lease: two renewals may fail before it expires).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from agentbridge.config import Config, ConfigError
from agentbridge.ledger.outage import DEFAULT_TIMEOUT

DEFAULT_LEASE = 3.0
#: a lone SQLite supervisor heartbeats its node row this often (nobody waits on it)
SQLITE_HEARTBEAT = 10.0

_KEYS = {"node", "lease_seconds", "heartbeat_seconds", "singleton", "ledger_timeout"}


@dataclass(frozen=True)
class FleetConfig:
    """The validated ``[fleet]`` table."""

    node: str
    lease_seconds: float = DEFAULT_LEASE
    heartbeat_seconds: float = DEFAULT_LEASE / 3
    #: channel name → runs once in the fleet (True) or on every node (False); overrides the
    #: channel's own ``singleton`` attribute
    singleton: dict[str, bool] = field(default_factory=dict)
    #: a PostgreSQL ledger: several supervisors, leases (else one SQLite supervisor, a lock)
    shared: bool = False
    #: seconds a ledger call waits for a connection before it logs the server unreachable
    #: (the work stays paused until the server is back: ``ledger/outage.py``)
    ledger_timeout: float = DEFAULT_TIMEOUT

    @property
    def node_ttl(self) -> float:
        """A node whose heartbeat is older than this is dead."""
        return self.lease_seconds if self.shared else 3 * SQLITE_HEARTBEAT


def _number(table: dict[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"config: fleet.{key} must be a number > 0, not {value!r}")
    return float(value)


def fleet_config(config: Config) -> FleetConfig:
    """``[fleet]`` of ``config``; ``ConfigError`` naming the bad key."""
    table = getattr(config, "fleet", {}) or {}
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                f"config: unknown key fleet.{key!r} (allowed: {', '.join(sorted(_KEYS))})"
            )
    node = table.get("node", socket.gethostname())
    if not isinstance(node, str) or not node.strip():
        raise ConfigError(f"config: fleet.node must be a non-empty string, not {node!r}")
    lease = _number(table, "lease_seconds", DEFAULT_LEASE)
    beat = _number(table, "heartbeat_seconds", lease / 3)
    if beat >= lease:
        raise ConfigError("config: fleet.heartbeat_seconds must be shorter than lease_seconds")
    singleton = table.get("singleton", {})
    if not isinstance(singleton, dict) or not all(isinstance(v, bool) for v in singleton.values()):
        raise ConfigError("config: fleet.singleton must map channel names to true or false")
    shared = config.ledger.url is not None
    timeout = _number(table, "ledger_timeout", DEFAULT_TIMEOUT)
    return FleetConfig(node.strip(), lease, beat, dict(singleton), shared, timeout)


__all__ = ["DEFAULT_LEASE", "FleetConfig", "fleet_config"]
