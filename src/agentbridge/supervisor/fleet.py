"""This supervisor as a node of a fleet: registration, heartbeat, who runs what, clean leave.

With a PostgreSQL ledger several supervisors share one ledger: each registers a node
(``[fleet] node``, default the host name) and heartbeats it; each agent runs on the node that
holds its lease (``ownership.py``); singleton channels run on the leader (``leader.py``); the
outbox relay claims only replies of channels started on this node. With SQLite nothing
changes: one supervisor (the lock file), one node, always the leader, no leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agentbridge.config import Config, ConfigError
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.outage import OutagePolicy
from agentbridge.ledger.store import LedgerError, LedgerStore, NodeTaken
from agentbridge.plugin.protocols import Channel
from agentbridge.supervisor import fleet_asks
from agentbridge.supervisor.dispatcher import AgentWorker
from agentbridge.supervisor.fleet_config import SQLITE_HEARTBEAT, FleetConfig, fleet_config
from agentbridge.supervisor.fleet_status import fleet_view
from agentbridge.supervisor.leader import Leadership, is_singleton
from agentbridge.supervisor.lock import SupervisorError, SupervisorLock
from agentbridge.supervisor.ownership import AgentOwner

log = logging.getLogger(__name__)


class FleetHost(Protocol):
    """What the fleet reads of its ``Supervisor`` (a Protocol: up.py imports this module)."""

    id: str
    config: Config
    ledger: LedgerStore | None
    channels: dict[str, Channel]
    started_channels: list[Channel]
    workers: dict[str, AgentWorker]
    relay: OutboxRelay | None
    stop_event: asyncio.Event

    async def _start_channel(self, channel: Channel) -> None: ...

    def _spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None: ...


class FleetLock:
    """SQLite: the lock file (one supervisor per ledger). PostgreSQL: nothing here; the node
    registration refuses a second live supervisor of the same node name."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.file = SupervisorLock(fleet.sup.config.ledger.path)

    def acquire(self) -> None:
        """Refuse a bad ``[fleet]`` table first, then lock (SQLite)."""
        if self.fleet.error is not None:
            raise SupervisorError(self.fleet.error)
        if not self.fleet.cfg.shared:
            self.file.acquire()

    def release(self) -> None:
        """Drop the lock file's lock (SQLite)."""
        self.file.release()


class Fleet:
    """The node part of one ``Supervisor`` (``sup``: it reads its ledger, channels, workers)."""

    def __init__(self, sup: FleetHost) -> None:
        self.sup = sup
        self.error: str | None = None
        try:
            self.cfg = fleet_config(sup.config)
        except ConfigError as exc:
            self.error = str(exc)
            self.cfg = FleetConfig(node=socket.gethostname())
        self.owners: dict[str, AgentOwner] = {}
        self.leadership: Leadership | None = None
        self.joined = False

    @property
    def ledger(self) -> LedgerStore:
        """The supervisor's open ledger."""
        assert self.sup.ledger is not None, "the fleet joins after the ledger opened"
        return self.sup.ledger

    def lock(self) -> FleetLock:
        """The supervisor's one-per-ledger guard."""
        return FleetLock(self)

    async def join(self) -> None:
        """Register the node (after a kill -9 on this host, the dead run's row is taken over)
        and start heartbeating; ``SupervisorError`` when a live supervisor is this node."""
        host, pid, ttl = socket.gethostname(), os.getpid(), self.cfg.node_ttl
        name, instance = self.cfg.node, self.sup.id
        try:
            await self.ledger.register_node(name, instance, host, pid, ttl)
        except NodeTaken as exc:
            old = next((n for n in await self.ledger.list_nodes() if n.name == name), None)
            if old is None or old.host != host or _pid_alive(old.pid):
                raise SupervisorError(str(exc)) from None
            log.warning("node %s: its previous run (pid %s) is dead; taking over", name, old.pid)
            await self.ledger.register_node(name, instance, host, pid, ttl, force=True)
        self.joined = True
        outage = getattr(self.ledger, "outage", None)
        if self.cfg.shared and isinstance(outage, OutagePolicy):
            outage.ride_out(self.cfg.ledger_timeout)  # an outage pauses the work, never fails it
        if self.cfg.shared:
            self.ledger.fences.strict(name, ttl)  # only agents this node owns: ownership.py
            fleet_asks.take_answers(self.sup)  # an answer to another node's agent, sent here
        self.sup._spawn("fleet:heartbeat", self._heartbeat)

    async def _heartbeat(self) -> None:
        every = self.cfg.heartbeat_seconds if self.cfg.shared else SQLITE_HEARTBEAT
        steady = time.monotonic() - self.cfg.node_ttl  #: since when heartbeats go through
        while True:
            await asyncio.sleep(every)
            began = time.monotonic()
            try:
                mine = await self.ledger.node_heartbeat(self.cfg.node, self.sup.id)
            except LedgerError as exc:
                log.warning("node %s: heartbeat not written: %s", self.cfg.node, exc)
                steady = time.monotonic()
                continue
            if time.monotonic() - began > every:  # the ledger was away: so were the others'
                steady = time.monotonic()
            if not mine:
                log.error("node %s: another supervisor took this node over", self.cfg.node)
                self.sup.stop_event.set()
                return
            if self.cfg.shared and time.monotonic() - steady >= self.cfg.node_ttl:
                await self._recover_dead_sends()  # after an outage, only once all could beat

    async def _recover_dead_sends(self) -> None:
        """A dead node's relay may have died mid-send: its ``sending`` rows become
        ``unknown`` (never resent blindly); a live node's are left alone."""
        try:
            unknown = await self.ledger.recover_sending(own=False)
        except LedgerError as exc:
            log.warning("node %s: dead nodes' sends not recovered: %s", self.cfg.node, exc)
            return
        for item in unknown:
            log.warning(
                "reply %s (message %s): node %s died while sending it; state unknown, not"
                " resent: check the platform, then `agentbridge outbox retry %s` or `sent %s`",
                item.id,
                item.message_id,
                item.node,
                item.id,
                item.id,
            )

    async def start_channels(self) -> None:
        """Join the fleet and start the channels this node runs now. SQLite: every channel,
        then the node row (a channel refusing to start leaves the ledger untouched). Shared:
        the singletons wait for the leader lease (a task takes it over when the leader dies)."""
        channels: list[Channel] = list(self.sup.channels.values())
        if not self.cfg.shared:
            for channel in channels:
                await self.sup._start_channel(channel)
            await self.join()
            return
        await self.join()
        singletons = [c for c in channels if is_singleton(c, self.cfg)]
        self.leadership = Leadership(
            self.ledger, self.cfg, singletons, self.sup._start_channel, self._stop_channel
        )
        leads = await self.leadership.try_acquire()
        for channel in channels:
            if channel not in singletons or leads:
                await self.sup._start_channel(channel)
        self.leadership.running = leads
        if self.sup.relay is not None:
            self.sup.relay.only = self.deliverable
        self.sup._spawn("fleet:leader", self.leadership.run)

    async def _stop_channel(self, channel: Channel) -> None:
        if channel in self.sup.started_channels:
            self.sup.started_channels.remove(channel)
            await channel.stop()

    def deliverable(self) -> list[str]:
        """The channels whose replies this node's relay may claim: the ones it runs."""
        return [c.name for c in self.sup.started_channels]

    def owns(self, agent: str) -> bool:
        """This node runs ``agent`` now (always, alone on SQLite)."""
        owner = self.owners.get(agent)
        return not self.cfg.shared or (owner is not None and owner.lease is not None)

    def runner(self, name: str) -> Callable[[], Awaitable[None]]:
        """What runs agent ``name``: its worker (SQLite), or its lease loop (shared)."""
        if not self.cfg.shared:
            return self.sup.workers[name].run
        owner = self.owners[name] = AgentOwner(self.sup.workers, name, self.ledger, self.cfg)
        return owner.run

    async def leave(self) -> None:
        """A clean stop: leases given back (other nodes take over at once), node marked
        stopped. The workers were stopped first, so nothing runs under these leases."""
        if not self.joined:
            return
        with contextlib.suppress(LedgerError):
            for owner in self.owners.values():
                if owner.lease is not None:
                    lease, owner.lease = owner.lease, None
                    await self.ledger.release_lease(lease.name, lease.node, lease.token)
            if self.leadership is not None:
                await self.leadership.release()
            await self.ledger.leave_node(self.cfg.node, self.sup.id)

    async def snapshot(self) -> dict[str, Any]:
        """``status``: this node, every node (alive or dead), the leases."""
        view = await fleet_view(self.ledger, self.cfg.node_ttl)
        leader = self.leadership.leader if self.leadership else True
        return {**view, "node": {"name": self.cfg.node, "leader": leader}}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["Fleet", "FleetHost", "FleetLock"]
