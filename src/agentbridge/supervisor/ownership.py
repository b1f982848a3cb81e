"""One agent on a fleet node: run it only while this node holds the agent's lease.

The lease (``agent:NAME``, ``ledger/nodes.py``) is acquired before the agent starts, renewed
every heartbeat, and checked again right before every injection (``may_inject``): a node
paused past its lease (SIGSTOP, a stalled VM) finds on waking that another node took the agent
over, and stops it without touching the pane. Every ledger write it might still attempt for the
agent's messages carries the old token and is refused by the database.

Who may acquire: an agent is pinned to ``[agents.X] node`` (default: whichever node lists it
and gets it first). Its home node takes it when free or after its own restart (a new token;
the dead run's in-flight messages are its victims, replayed by the worker's start-up
recovery). A ``relocatable`` agent is taken over by another live node once its lease expired,
and stays there; a pinned one waits for its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import MutableMapping

from agentbridge.ledger.nodes import Lease, agent_lease
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.supervisor.dispatcher import AgentHealth, AgentWorker
from agentbridge.supervisor.fleet_config import FleetConfig

log = logging.getLogger(__name__)


class AgentOwner:
    """The lease loop of one agent: acquire → run its worker → renew → on loss, stop it."""

    def __init__(
        self,
        workers: MutableMapping[str, AgentWorker],
        name: str,
        ledger: LedgerStore,
        cfg: FleetConfig,
    ) -> None:
        self.workers = workers
        self.name = name
        self.ledger = ledger
        self.cfg = cfg
        agent = workers[name].agent
        self.lease_name = agent_lease(name)
        self.home = agent.node or cfg.node
        self.relocatable = agent.relocatable
        self.lease: Lease | None = None
        #: monotonic time until which the last renewal guarantees the lease
        self.valid_until = 0.0
        self.epochs = 0
        self.unreachable = False

    @property
    def worker(self) -> AgentWorker:
        """The agent's current worker (a new one for every ownership epoch)."""
        return self.workers[self.name]

    def _standby(self, detail: str) -> None:
        self.worker.health, self.worker.detail = AgentHealth.STANDBY, detail

    async def run(self) -> None:
        """Own and run the agent for as long as the supervisor runs."""
        while True:
            lease = await self._acquire()
            if self.epochs:  # a stopped worker cannot run again: the next epoch gets a new one
                self.workers[self.name] = _fresh(self.worker)
            self.epochs += 1
            worker = self.worker
            worker.before_inject = self.may_inject
            log.info("agent %s: owned by node %s (token %s)", self.name, lease.node, lease.token)
            task = asyncio.create_task(worker.run(), name=f"worker:{self.name}")
            try:
                if not await self._hold(task):
                    return  # the worker was stopped: the supervisor is shutting down
            finally:
                if not task.done():
                    with contextlib.suppress(Exception):
                        await worker.stop()
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            self._standby("this node lost the agent's lease")

    async def _acquire(self) -> Lease:
        """Wait until this node may and does own the agent."""
        me = self.cfg.node
        if self.home != me and not self.relocatable:
            self._standby(f"pinned to node {self.home}")
            await asyncio.Event().wait()  # never: the supervisor cancels this task at stop
        while True:
            try:
                lease = await self._try_acquire()
            except LedgerError as exc:
                log.debug("agent %s: cannot acquire its lease yet: %s", self.name, exc)
                lease = None
            if lease is not None:
                self.lease = lease
                return lease
            await asyncio.sleep(self.cfg.heartbeat_seconds / 2)

    async def _try_acquire(self) -> Lease | None:
        held = next((x for x in await self.ledger.list_leases() if x.name == self.lease_name), None)
        if self.home != self.cfg.node:  # relocatable, not home: only a lease its owner let expire
            if held is None or held.valid(self.ledger.clock()):
                owner = held.node if held else self.home
                self._standby(f"standby: runs on node {owner}")
                return None
        elif held is not None and held.node != self.cfg.node and held.valid(self.ledger.clock()):
            self._standby(f"standby: runs on node {held.node}")
            return None
        started = time.monotonic()
        lease = await self.ledger.acquire_lease(
            self.lease_name, self.cfg.node, self.cfg.lease_seconds, takeover=self.relocatable
        )
        if lease is not None:
            self.valid_until = started + self.cfg.lease_seconds
        return lease

    async def _hold(self, task: asyncio.Task[None]) -> bool:
        """Renew every heartbeat until the lease is lost (True) or the worker ends (False)."""
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.cfg.heartbeat_seconds)
            if done:
                task.result()  # a crash is the supervisor's to log and restart
                return False
            if not await self._renew():
                return True

    async def _renew(self) -> bool:
        """False only when the database says another node owns the agent now; an
        unreachable database keeps the worker running (its writes wait or fail by themselves),
        while ``may_inject`` stops trusting the lease once it may have expired."""
        lease = self.lease
        if lease is None:
            return False
        started = time.monotonic()
        try:
            renewed = await self.ledger.renew_lease(
                lease.name, lease.node, lease.token, self.cfg.lease_seconds
            )
        except LedgerError as exc:
            if not self.unreachable:  # once per outage, not every heartbeat
                log.warning("agent %s: lease not renewed (ledger unreachable): %s", self.name, exc)
            self.unreachable = True
            return True
        self.unreachable = False
        if renewed is None:
            log.warning(
                "agent %s: node %s lost the agent's lease (token %s): stopping it here",
                self.name,
                lease.node,
                lease.token,
            )
            self.lease = None
            return False
        self.valid_until = started + self.cfg.lease_seconds
        return True

    async def may_inject(self) -> bool:
        """Right before a paste: does this node still own the agent? Asks the database (a
        renewal), so a node that was paused past its lease learns it lost the agent now."""
        if self.lease is None:
            return False
        if not await self._renew():
            return False
        return time.monotonic() < self.valid_until


def _fresh(old: AgentWorker) -> AgentWorker:
    """A new worker for the same agent (a stopped one does not run again)."""
    return AgentWorker(
        agent=old.agent,
        profile=old.profile,
        ledger=old.ledger,
        tmux=old.tmux,
        config=old.config,
        receipts=old.receipts,
        supervisor_id=old.supervisor_id,
        observer=old.observer,
    )


__all__ = ["AgentOwner"]
