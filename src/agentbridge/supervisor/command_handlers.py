"""What each chat command does; each returns its answer (the reply) and a one-line summary.

Rules the handlers keep:

- ``/stop`` presses only our fixed Escape key in the pane (never message text), once the
  message is pasted (a ``claimed`` one is waited for: Esc at an idle prompt stops nothing),
  then waits until the ledger shows the turn ended (``interrupted``, by the dispatcher's own
  interrupt path). A lone Esc can be read as the start of an escape sequence, so it is pressed again
  (at most :data:`STOP_PRESSES` times, :data:`STOP_REPRESS` s apart) while that same turn is
  still in flight and the agent says it is busy: a second Esc at an idle Claude would open its
  rewind menu. It stops the agent's current turn, whichever conversation sent it.
- ``/new`` runs only after ``/new confirm`` from the same sender within :data:`CONFIRM_WINDOW`
  seconds (the pending ``/new`` is read from the ledger, so a restart in between does not
  lose it). The message in flight is never cut off: the fresh session starts once its turn has
  ended; queued messages then go to the fresh session. The session is the agent's, shared by
  every conversation routed to it.
- ``/retry ID`` / ``/cancel ID`` act only on messages of the command's own conversation;
  another conversation's id reads as "no such message" (ids are not secrets, but reach is).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from agentbridge.config import Config
from agentbridge.kinds import WaitKind
from agentbridge.ledger.store import LedgerError, LedgerStore, NotFound
from agentbridge.models import Message
from agentbridge.states import MessageState
from agentbridge.supervisor import fleet_commands
from agentbridge.supervisor.commands import (
    COMMAND_LANE,
    UNKNOWN,
    AgentChoices,
    Command,
    help_text,
    parse_command,
    reachable,
    route_choice,
)
from agentbridge.supervisor.dispatcher import AgentHealth, AgentWorker

STOP_TIMEOUT = 20.0
STOP_REPRESS = 3.0
STOP_PRESSES = 3
CONFIRM_WINDOW = 60.0


@dataclass(frozen=True)
class Answer:
    """The reply to the sender and the audit trail's one line."""

    text: str
    summary: str


@dataclass
class CommandContext:
    """What handlers may touch: the config, the ledger, the agent workers, the choices."""

    config: Config
    ledger: LedgerStore
    workers: Mapping[str, AgentWorker]
    choices: AgentChoices
    actor: str


Handler = Callable[[CommandContext, Message, Command, str], Awaitable[Answer]]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds / 3600:.1f}h"


def _flight(ctx: CommandContext, agent: str) -> tuple[AgentWorker | None, Message | None]:
    worker = ctx.workers.get(agent)
    session = worker.session if worker is not None else None
    flight = session.current if session is not None else None
    return worker, flight.message if flight is not None else None


async def stop(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """Esc into the agent's pane; the answer says how the turn ended."""
    worker, running = _flight(ctx, agent)
    session = worker.session if worker is not None else None
    if worker is None or session is None or running is None:
        return Answer(f"agent {agent}: nothing is running", "nothing in flight")
    await ctx.ledger.note(
        running.id,
        ctx.actor,
        "stop_requested",
        f"/stop by {msg.sender} ({msg.channel}:{msg.conversation}, message {msg.id})",
    )
    deadline = time.monotonic() + STOP_TIMEOUT
    presses, last_press = 0, 0.0
    while True:
        current = await ctx.ledger.get(running.id)
        if not current.in_flight:
            break
        now = time.monotonic()
        same_turn = session.current is not None and session.current.message.id == running.id
        started = current.state != MessageState.CLAIMED  # pasted: there is a turn to stop
        if (
            same_turn
            and started
            and (
                presses == 0
                or (
                    presses < STOP_PRESSES
                    and now - last_press >= STOP_REPRESS
                    and session.agent_status() in (None, "busy")
                )
            )
        ):
            await session.tmux.send_key(session.pane_id or "", "Escape")  # a fixed key only
            presses, last_press = presses + 1, now
        if now > deadline:
            return Answer(
                f"pressed Esc {presses}x but message {running.id} is still {current.state}",
                f"message {running.id} still {current.state} after {presses} Esc",
            )
        await asyncio.sleep(0.1)
    if current.state == MessageState.INTERRUPTED:
        text = f"stopped: message {running.id} ended interrupted (it is not re-run)"
    else:
        text = f"message {running.id} ended {current.state} before the stop took effect"
    return Answer(text, f"message {running.id} {current.state} after {presses} Esc")


async def status(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """The agent's health, queue, in-flight message, last error and rate-limit reset."""
    worker, running = _flight(ctx, agent)
    if worker is None:
        return Answer(f"agent {agent}: not running in this bridge", "no such worker")
    counts = (await ctx.ledger.stats())["agents"].get(agent, {})
    lines = [f"agent {agent} ({worker.agent.runtime}): {worker.health}"]
    now = ctx.ledger.clock()
    age = counts.get("oldest_queued_age")
    oldest = f", oldest {_age(age)}" if age is not None else ""
    held = f", {counts['quarantined']} quarantined" if counts.get("quarantined") else ""
    lines.append(f"queue: {counts.get('queued', 0)} queued{oldest}{held}")
    if running is not None:
        claimed = [
            e.at
            for e in await ctx.ledger.events_for(running.id)
            if e.kind == "transition" and e.to_state == "claimed"
        ]
        since = claimed[-1] if claimed else running.created_at
        lines.append(f"in flight: message {running.id}, running {_age(now - since)}")
    else:
        lines.append("in flight: none")
    error = worker.detail
    if not error:
        failed = await ctx.ledger.list_messages(state="failed", agent=agent, limit=1)
        error = f"message {failed[-1].id}: {failed[-1].reason}" if failed else ""
    lines.append(f"last error: {error or 'none'}")
    if worker.waiting_for == WaitKind.RATE_LIMIT and worker.waiting_until is not None:
        reset = time.time() + (worker.waiting_until - time.monotonic())
        lines.append(f"rate limit resets at {time.strftime('%H:%M', time.localtime(reset))}")
    lines.extend(await fleet_commands.fleet_lines(ctx.ledger))  # a fleet: who answered
    return Answer("\n".join(lines), f"status of {agent}")


async def _pending_new(ctx: CommandContext, msg: Message) -> Message | None:
    """This sender's ``/new`` of this conversation in the last minute, not yet confirmed."""
    recent = await ctx.ledger.list_messages(
        agent=msg.agent, conversation=msg.conversation, channel=msg.channel, limit=50
    )
    for earlier in reversed([m for m in recent if m.id < msg.id and m.sender == msg.sender]):
        command = parse_command(earlier.text)
        if command is None or command.name != "new" or earlier.state != MessageState.COMPLETED:
            continue
        if command.args.lower() == "confirm":
            return None  # already confirmed: a new /new is needed
        return earlier if msg.created_at - earlier.created_at <= CONFIRM_WINDOW else None
    return None


async def new(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """``/new`` asks; ``/new confirm`` starts a fresh session once the turn in flight ends."""
    arg = cmd.args.lower()
    if arg not in ("", "confirm"):
        return Answer("usage: /new, then /new confirm", f"bad args {cmd.args!r}")
    worker, running = _flight(ctx, agent)
    if worker is None:
        return Answer(f"agent {agent}: not running in this bridge", "no such worker")
    if not arg:
        return Answer(
            f"this clears agent {agent}'s context (for every conversation it serves):"
            f" send /new confirm within {CONFIRM_WINDOW:.0f} s",
            "asked to confirm",
        )
    if await _pending_new(ctx, msg) is None:
        return Answer(
            f"no /new of yours within {CONFIRM_WINDOW:.0f} s to confirm: send /new first",
            "nothing to confirm",
        )
    worker.breaker.reset()  # a person asked: not a crash loop (and it lifts "degraded")
    if worker.health == AgentHealth.DEGRADED:
        worker.health = AgentHealth.RESTARTING
    worker.request_restart(f"/new by {msg.sender}", resume=False, after_turn=True)
    after = f" once message {running.id} has finished" if running is not None else " now"
    return Answer(
        f"starting a fresh session of agent {agent}{after}; queued messages go to it",
        "fresh session requested",
    )


async def _ours(ctx: CommandContext, msg: Message, cmd: Command) -> Message | Answer:
    """The message ``cmd.args`` names, when it belongs to this conversation."""
    word = cmd.args.lstrip("#")
    if not word.isdigit():
        return Answer(f"usage: /{cmd.name} ID (a message id)", f"bad args {cmd.args!r}")
    try:
        target = await ctx.ledger.get(int(word))
    except NotFound:
        target = None
    if (
        target is None
        or (target.channel, target.conversation) != (msg.channel, msg.conversation)
        or target.agent.startswith(COMMAND_LANE)  # a command (a fleet's: @commands:NODE)
    ):
        return Answer(f"no message {word} in this conversation", f"no message {word} here")
    return target


async def retry(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """Quarantined/interrupted: requeued (attempts start over); failed: its text sent again."""
    target = await _ours(ctx, msg, cmd)
    if isinstance(target, Answer):
        return target
    state = target.state
    if state in (MessageState.QUARANTINED, MessageState.INTERRUPTED):
        try:
            await ctx.ledger.requeue_quarantined(target.id, actor=f"{ctx.actor}:{msg.sender}")
        except LedgerError as exc:
            return Answer(f"message {target.id} could not be requeued: {exc}", "requeue refused")
        return Answer(f"message {target.id} is queued again", f"requeued {target.id}")
    if state == MessageState.FAILED:
        again = await ctx.ledger.ingest(
            msg.channel,
            msg.conversation,
            msg.sender,
            target.text,
            key=f"agentbridge-retry:{msg.id}",  # re-handled after a crash: the same new message
            agent=target.agent,
            meta={"retry_of": target.id},
        )
        new_id = again.message.id
        return Answer(f"message {target.id} had failed: sent again as message {new_id}", "resent")
    if state == MessageState.QUEUED:
        return Answer(f"message {target.id} is already queued", "already queued")
    return Answer(f"message {target.id} is {state}: nothing to retry", f"{state}: no retry")


async def cancel(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """Drop a queued, interrupted or quarantined message (it ends ``failed``)."""
    target = await _ours(ctx, msg, cmd)
    if isinstance(target, Answer):
        return target
    if target.in_flight:
        return Answer(f"message {target.id} is running: use /stop", "in flight: not cancelled")
    if target.state not in (
        MessageState.QUEUED,
        MessageState.QUARANTINED,
        MessageState.INTERRUPTED,
    ):
        return Answer(f"message {target.id} is {target.state}: nothing to cancel", "final")
    try:
        await ctx.ledger.drop(
            target.id, f"cancelled by {msg.sender} with /cancel", actor=f"{ctx.actor}:{msg.sender}"
        )
    except LedgerError:  # claimed in the meantime
        return Answer(f"message {target.id} has just started: use /stop", "started meanwhile")
    return Answer(f"message {target.id} cancelled", f"cancelled {target.id}")


def _reachable_agents(ctx: CommandContext, msg: Message) -> list[str]:
    return [
        name
        for name in ctx.config.agents
        if reachable(ctx.config, msg.channel, msg.conversation, msg.sender, name)
    ]


async def agents(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """The agents this conversation can reach; ``*`` marks the one its messages go to."""
    chosen = ctx.choices.get(msg.channel, msg.conversation)
    lines = ["agents for this conversation:"]
    for name in _reachable_agents(ctx, msg):
        worker = ctx.workers.get(name)
        health = str(worker.health) if worker is not None else "not running"
        health = await fleet_commands.where_runs(ctx.ledger, name, health)  # a fleet's node
        mark = "*" if name == agent else " "
        via = " (chosen with /use)" if name == chosen else ""
        lines.append(f"{mark} {name}: {health}{via}")
    lines.append("switch with /use NAME; mention one with @NAME")
    return Answer("\n".join(lines), "listed agents")


async def use(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """Record this conversation's agent (or forget it with ``/use reset``)."""
    name = cmd.args.strip()
    names = _reachable_agents(ctx, msg)
    if not name:
        return Answer(f"usage: /use NAME (one of: {', '.join(names)})", "no name")
    found = next((a for a in names if a.lower() == name.lower()), None)
    if found is None and name.lower() == "reset":
        ctx.choices.set(msg.channel, msg.conversation, None)
        routed = route_choice(ctx.config, msg.channel, msg.conversation, msg.sender, "?").agent
        return Answer(f"choice cleared: messages go to {routed} by the routes", "choice cleared")
    if found is None:
        return Answer(f"no agent {name!r} here (one of: {', '.join(names)})", f"no {name!r}")
    ctx.choices.set(msg.channel, msg.conversation, found)
    return Answer(f"this conversation now talks to {found}", f"chose {found}")


async def show_help(ctx: CommandContext, msg: Message, cmd: Command, agent: str) -> Answer:
    """The list of commands (an unknown ``/word`` gets it too, and never reaches the agent)."""
    first = f"unknown command /{cmd.word}" if cmd.name == UNKNOWN else ""
    return Answer(help_text(first), "help" if not first else f"unknown /{cmd.word}")


HANDLERS: dict[str, Handler] = {
    "stop": stop,
    "status": status,
    "new": new,
    "retry": retry,
    "cancel": cancel,
    "agents": agents,
    "use": use,
    "help": show_help,
    UNKNOWN: show_help,
}


def handler_for(command: Command) -> Handler:
    """The handler of a parsed command (help for anything unknown)."""
    return HANDLERS.get(command.name, show_help)


__all__ = ["HANDLERS", "Answer", "CommandContext", "handler_for"]
