"""The leader lease: channels that must run once in a fleet start only on its holder.

A Telegram poller or a Slack socket connected from two nodes would take every update twice
(or steal each other's), so such a channel is a **singleton**: the node holding the named
lease ``leader`` runs it, the others do not. A channel says so with a ``singleton`` attribute
(missing: True, the safe side: a plugin that does not say runs once); ``[fleet] singleton``
overrides it per channel. Web console, HTTP API and the local channel serve on every node.

Why a lease row and not a PostgreSQL advisory lock: an advisory lock belongs to one database
session, so it would tie leadership to one pooled connection (a pool recycling it, or a
reconnect after a server restart, drops it silently) and a paused holder keeps it as long as
its TCP connection lives, however long it sleeps; the lease row expires by the clock, moves
with a new fencing token, and is read by ``status`` like the agents' leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from agentbridge.ledger.nodes import LEADER, Lease
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.plugin.protocols import Channel
from agentbridge.supervisor.fleet_config import FleetConfig

log = logging.getLogger(__name__)


def is_singleton(channel: Channel, cfg: FleetConfig) -> bool:
    """Runs once in the fleet (on the leader) rather than on every node."""
    if channel.name in cfg.singleton:
        return cfg.singleton[channel.name]
    return bool(getattr(channel, "singleton", True))


class Leadership:
    """Holds (or waits for) the leader lease and starts/stops the singleton channels."""

    def __init__(
        self,
        ledger: LedgerStore,
        cfg: FleetConfig,
        channels: Sequence[Channel],
        start: Callable[[Channel], Awaitable[None]],
        stop: Callable[[Channel], Awaitable[None]],
    ) -> None:
        self.ledger = ledger
        self.cfg = cfg
        self.channels = list(channels)
        self._start = start
        self._stop = stop
        self.lease: Lease | None = None
        self.running = False

    @property
    def leader(self) -> bool:
        """This node holds the leader lease (as of its last renewal)."""
        return self.lease is not None

    async def try_acquire(self) -> bool:
        """Take the lease if it is free or expired (or this node's own, after a restart)."""
        try:
            self.lease = await self.ledger.acquire_lease(
                LEADER, self.cfg.node, self.cfg.lease_seconds, takeover=True
            )
        except LedgerError as exc:
            log.debug("leader lease not acquired: %s", exc)
        if self.lease is not None:
            log.info("node %s leads (token %s)", self.cfg.node, self.lease.token)
        return self.leader

    async def run(self) -> None:
        """Renew while leading; otherwise try to take over every half heartbeat."""
        unreachable = False
        while True:
            if self.lease is None:
                if await self.try_acquire():
                    await self._start_all()
                    continue
                await asyncio.sleep(self.cfg.heartbeat_seconds / 2)
                continue
            await asyncio.sleep(self.cfg.heartbeat_seconds)
            lease = self.lease
            try:
                renewed = await self.ledger.renew_lease(
                    lease.name, lease.node, lease.token, self.cfg.lease_seconds
                )
            except LedgerError as exc:
                if not unreachable:  # once per outage
                    log.warning("leader lease not renewed (ledger unreachable): %s", exc)
                unreachable = True
                continue
            unreachable = False
            if renewed is None:
                log.warning("node %s lost the leader lease: stopping its singletons", lease.node)
                self.lease = None
                await self._stop_all()

    async def _start_all(self) -> None:
        self.running = True
        for channel in self.channels:
            await self._start(channel)

    async def _stop_all(self) -> None:
        self.running = False
        for channel in reversed(self.channels):
            with contextlib.suppress(Exception):
                await self._stop(channel)

    async def release(self) -> None:
        """A clean stop: another node takes over at once, not after the lease."""
        if self.lease is not None:
            with contextlib.suppress(LedgerError):
                await self.ledger.release_lease(LEADER, self.lease.node, self.lease.token)
            self.lease = None


__all__ = ["Leadership", "is_singleton"]
