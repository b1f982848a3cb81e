"""The supervisor's command center: stored commands are claimed from their lane and answered.

Durability is the ledger's, as for any message: the channel's ingest commits the command (in
the lane :data:`~agentbridge.supervisor.commands.COMMAND_LANE`) before its ack; the center
claims it with a lease, runs its handler, notes a ``command`` audit event naming it and
completes it with the answer as its reply, in the same commit as the reply's outbox row. A
bridge that dies in between leaves the command queued or in flight: the next supervisor
requeues the latter and handles both (a command whose handling kills the bridge every time is
quarantined at the attempt limit, like any message).

Hooked in with one call, :func:`wrap`, around the supervisor's ``ctx.ingest``: it routes
(honouring ``/use``), sends commands to the lane and everything else on unchanged. Commands
written by ``agentbridge send`` wake the center through the control socket: the center chains
onto its ``send`` (the supervisor stored it) and ``poke`` (the CLI stored it, no supervisor
answered at first) handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from agentbridge.config import Config
from agentbridge.crashpoints import crash_point
from agentbridge.ledger.store import IngestResult, LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.plugin.protocols import Attachment, Ingest
from agentbridge.supervisor import fleet_commands
from agentbridge.supervisor.command_handlers import Answer, CommandContext, handler_for
from agentbridge.supervisor.commands import (
    COMMAND_LANE,
    UNKNOWN,
    AgentChoices,
    Command,
    choices_path,
    command_lane,
    parse_command,
    route_choice,
)
from agentbridge.supervisor.control import ControlServer
from agentbridge.supervisor.dispatcher import AgentWorker
from agentbridge.supervisor.routing import Unroutable

log = logging.getLogger(__name__)

#: the safety-net sweep when nothing woke the center
SWEEP_SECONDS = 5.0


class CommandHost(Protocol):
    """The parts of the supervisor the center uses."""

    id: str
    config: Config
    ledger: LedgerStore | None
    workers: dict[str, AgentWorker]
    control: ControlServer | None
    command_center: CommandCenter | None

    def _spawn(self, name: str, factory: Any) -> None: ...


class CommandCenter:
    """Claims commands from the lane, one task each (FIFO within a conversation)."""

    def __init__(self, host: CommandHost) -> None:
        assert host.ledger is not None
        self.host = host
        self.ledger = host.ledger
        self.owner = f"{host.id}/commands"
        self.choices = AgentChoices.load(choices_path(host.config))
        self.context = CommandContext(
            host.config, host.ledger, host.workers, self.choices, self.owner
        )
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovered = False

    def poke(self) -> None:
        """A command may be waiting: look now."""
        self.wake.set()

    async def run(self) -> None:
        """Requeue what a dead bridge left in flight, then claim and handle, forever."""
        if not self._recovered:
            for victim in await fleet_commands.victims(self.ledger):  # a fleet: per-node lanes
                with contextlib.suppress(LedgerError):
                    await self.ledger.requeue_victim(
                        victim.id, victim.fence, "the bridge stopped while handling it", self.owner
                    )
            self._recovered = True
        lease = self.host.config.ledger.lease_seconds
        while True:
            message = None
            for lane in fleet_commands.lanes(self.ledger):  # its node's lane first (a fleet)
                if message is None:
                    message = await self.ledger.claim_next(lane, self.owner, lease, exclusive=False)
            if message is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), SWEEP_SECONDS)
                self.wake.clear()
                continue
            task = asyncio.create_task(self._handle(message), name=f"command:{message.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: Message) -> None:
        crash_point("before_command")
        command = parse_command(message.text) or Command(UNKNOWN, message.text.strip()[1:])
        agent = str(message.meta.get("for_agent") or next(iter(self.host.config.agents), ""))
        try:
            answer = await handler_for(command)(self.context, message, command, agent)
        except Exception as exc:
            log.exception("command /%s of message %s failed", command.name, message.id)
            answer = Answer(f"/{command.name} failed: {exc}", f"error: {exc}"[:200])
        try:
            await self.ledger.note(
                message.id, self.owner, "command", f"/{command.name}: {answer.summary}"
            )
            await self.ledger.complete(
                message.id, message.fence, answer.text, self.owner, detail=f"/{command.name}"
            )
        except LedgerError as exc:
            log.warning("command %s: answer not recorded: %s", message.id, exc)
        log.info("message %s: /%s answered (%s)", message.id, command.name, answer.summary)
        self.poke()  # the conversation's next command may wait for this one


def center_of(host: CommandHost) -> CommandCenter:
    """The supervisor's one center, started (and chained onto ``poke``) on first use."""
    center = host.command_center
    if center is None:
        center = host.command_center = CommandCenter(host)
        if host.control is not None:
            handlers = host.control.handlers
            previous = handlers.get("poke")

            async def poke(request: dict[str, Any]) -> dict[str, Any]:
                center.poke()
                return await previous(request) if previous is not None else {}

            handlers["poke"] = poke
            send = handlers.get("send")
            if send is not None:  # a command sent by ``agentbridge send`` through the socket

                async def send_then_wake(request: dict[str, Any]) -> dict[str, Any]:
                    answer = await send(request)
                    if str(answer.get("message", {}).get("agent")).startswith(COMMAND_LANE):
                        center.poke()
                    return answer

                handlers["send"] = send_then_wake
        fleet_commands.wake_on_stores(center.ledger, center.poke)
        host._spawn("commands", center.run)
    return center


def wrap(host: CommandHost, channel: str, ingest: Ingest) -> Ingest:
    """``ingest`` with chat commands taken out: routed here, stored in the lane, answered."""
    center = center_of(host)
    config = host.config

    async def ingest_or_command(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        agent: str | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> IngestResult:
        if agent is None:  # routes (and /use) pick it; Unroutable → the channel refuses
            try:
                decision = route_choice(config, channel, conversation, sender, text, center.choices)
            except Unroutable as exc:
                log.warning("%s: refused an unroutable message: %s", channel, exc)
                raise
            agent, text = decision.agent, decision.text
        lane = command_lane(text, agent)
        if lane["agent"] != COMMAND_LANE or attachments:  # files come with a message, not a command
            return await ingest(conversation, sender, text, key, meta, priority, agent, attachments)
        lane = await fleet_commands.routed(center.ledger, config, lane)  # its agent's node's
        meta = {**(meta or {}), **lane["meta"]}
        result = await ingest(conversation, sender, text, key, meta, priority, lane["agent"])
        center.poke()
        return result

    return ingest_or_command


__all__ = ["CommandCenter", "CommandHost", "center_of", "wrap"]
