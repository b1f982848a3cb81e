"""The dispatcher of one agent: claim → inject → wait for proof → next, and restarts.

Event-driven: an ingest (or a poke from the CLI) sets ``wake`` and the next message is claimed
at once; a slow sweep (5 s) is only a safety net. One message in flight per agent session,
FIFO per conversation (the ledger's claim order). On any restart the victims (the dead
session's in-flight messages) are reconciled or replayed before anything newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge import paths
from agentbridge.agent.host import AgentCommandNotFound, AgentSession
from agentbridge.agent.tmux import TmuxServer
from agentbridge.agent.turn import InFlight, TurnOutcome
from agentbridge.config import AgentConfig, Config
from agentbridge.crashpoints import crash_point
from agentbridge.delivery.receipts import Receipts
from agentbridge.kinds import ReceiptKind, WaitKind
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.plugin.protocols import RuntimeProfile, ScreenKind
from agentbridge.runtimes.errors import error_text_of
from agentbridge.supervisor.health import CrashLoopBreaker, HealthMonitor
from agentbridge.supervisor.held_box import HeldBox
from agentbridge.supervisor.interrupts import end_interrupted
from agentbridge.supervisor.progress import ProgressReporter
from agentbridge.supervisor.recovery import read_evidence, recover_victims

log = logging.getLogger(__name__)


ERROR_SCREENS = (ScreenKind.RATE_LIMITED, ScreenKind.CONTEXT_FULL, ScreenKind.API_ERROR)


def reply_command(config: Config) -> str:
    """How an agent runs ``agentbridge`` (shell words, for the envelope's reply hint)."""
    return shlex.join(paths.agentbridge_argv(config.path))


class AgentHealth(enum.StrEnum):
    """What ``status`` shows for an agent."""

    STARTING = "starting"
    HEALTHY = "healthy"
    WAITING = "waiting"  # rate limit or a permission prompt: no restart, senders told
    RESTARTING = "restarting"
    DEGRADED = "degraded"  # crash-loop breaker tripped, or a login is needed
    STOPPED = "stopped"
    STANDBY = "standby"  # fleet: another node owns the agent (supervisor/ownership.py)


class AgentWorker:
    """Owns one agent: its current session, its dispatch loop and its health."""

    def __init__(
        self,
        *,
        agent: AgentConfig,
        profile: RuntimeProfile,
        ledger: LedgerStore,
        tmux: TmuxServer,
        config: Config,
        receipts: Receipts,
        supervisor_id: str,
        observer: Any = None,
    ) -> None:
        self.agent = agent
        self.profile = profile
        self.ledger = ledger
        self.tmux = tmux
        self.config = config
        self.receipts = receipts
        self.supervisor_id = supervisor_id
        self.observer = observer
        self.state_dir = config.state_dir / "agents" / agent.name
        self.session: AgentSession | None = None
        self.health = AgentHealth.STARTING
        self.detail = ""
        self.wake = asyncio.Event()
        self.breaker = CrashLoopBreaker(agent.max_restarts, agent.restart_window)
        self.restart_count = 0
        self.busy_restarting = False
        self.waiting_for: WaitKind | None = None
        self.waiting_until: float | None = None
        self.monitor = HealthMonitor(self)
        self.held_box = HeldBox()  # the growing wait after a refused injection
        self._generation = itertools.count(1)
        self._restart_reason: str | None = None
        self._restart_resume = agent.resume
        self._stopping = False
        self.last_recovery: dict[str, list[int]] = {}
        self.progress = ProgressReporter(config, receipts.channels)  # "working…" to the sender
        self.before_inject: Callable[[], Awaitable[bool]] | None = None  # fleet: lease check
        #: observers of claims and turn ends (``supervisor.metrics``); they must not block
        self.on_claim: Callable[[Message], None] | None = None
        self.on_turn_end: Callable[[InFlight], None] | None = None

    # ------------------------------------------------------------------ requests from others

    def poke(self) -> None:
        """A message may be waiting: look now."""
        self.wake.set()

    def request_restart(
        self, reason: str, resume: bool | None = None, *, after_turn: bool = False
    ) -> None:
        """Health or a human asks for a restart; the dispatch loop performs it (``after_turn``,
        for ``/new``: once the message in flight has ended, so that nothing is cut off)."""
        if self._restart_reason is None:
            self._restart_reason = reason
            self._restart_resume = self.agent.resume if resume is None else resume
        if not after_turn and self.session is not None and self.session.current is not None:
            self.session.mark_dead(reason)
        self.wake.set()

    def enter_waiting(self, why: WaitKind, detail: str, until: float | None = None) -> None:
        """Rate limit / permission prompt: stop dispatching, tell the senders, never restart."""
        first = self.waiting_for != why
        self.waiting_for, self.waiting_until = why, until
        self.health, self.detail = AgentHealth.WAITING, detail
        if first:
            log.warning("agent %s: waiting: %s", self.agent.name, detail)
            flight = self.session.current if self.session else None
            if flight is not None:
                self.receipts.emit(flight.message, ReceiptKind.WAITING, detail)

    def leave_waiting(self, why: WaitKind) -> None:
        """The wait is over."""
        if self.waiting_for == why:
            self.waiting_for = self.waiting_until = None
            self.health, self.detail = AgentHealth.HEALTHY, ""
            self.wake.set()

    def degrade(self, detail: str) -> None:
        """Stop restarting and dispatching until a human intervenes."""
        if self.health != AgentHealth.DEGRADED:
            log.error("agent %s: degraded: %s", self.agent.name, detail)
        self.health, self.detail = AgentHealth.DEGRADED, detail

    async def human_restart(self) -> None:
        """``agentbridge restart``-style recovery from degraded."""
        self.breaker.reset()
        self.health = AgentHealth.RESTARTING
        self.request_restart("restart requested by a human")

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Recover what an earlier supervisor left in flight, start the agent, dispatch."""
        monitor = asyncio.create_task(self.monitor.run(), name=f"health:{self.agent.name}")
        try:
            await self._recover_previous()
            await self._start_session(self.agent.resume)
            while not self._stopping:
                await self._step()
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    async def _step(self) -> None:
        if self._restart_reason is not None and self.health != AgentHealth.DEGRADED:
            await self._restart()
            return
        if self.health == AgentHealth.DEGRADED:
            await self._wait_wake(5)
            return
        if self.waiting_for == WaitKind.RATE_LIMIT and self.waiting_until is not None:
            remaining = self.waiting_until - time.monotonic()
            if remaining > 0:
                await self._wait_wake(min(remaining, 5))
                return
            self.leave_waiting(WaitKind.RATE_LIMIT)
        session = self.session
        if session is None or session.ended:
            self.request_restart("no live session")
            return
        if self.waiting_for == WaitKind.PERMISSION:
            await self._wait_wake(1)
            return
        message = await self.ledger.claim_next(
            self.agent.name, session.owner, self.config.ledger.lease_seconds
        )
        if message is None:
            await self._wait_wake(5)
            return
        crash_point("after_claim")
        if self.on_claim is not None:
            self.on_claim(message)
        log.info(
            "message %s: claimed by %s (attempt %s)", message.id, session.owner, message.attempt
        )
        self.monitor.nudge()
        flight = await session.run_message(message, idle_timeout=self.agent.launch_grace)
        await self._after_turn(flight)

    async def _wait_wake(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()

    async def _after_turn(self, flight: InFlight) -> None:
        if self.on_turn_end is not None:
            self.on_turn_end(flight)
        message = flight.message
        outcome = flight.outcome
        if outcome == TurnOutcome.NOT_DELIVERED:  # someone is typing, or no box (held_box.py)
            self.receipts.emit(message, ReceiptKind.WAITING, flight.detail)
            await self.held_box.wait(self.session, lambda: self._stopping or self._restart_reason)
            return
        self.held_box.reset()
        if outcome == TurnOutcome.COMPLETED:
            return
        if outcome == TurnOutcome.ABORTED:  # a deliberate stop: never replayed
            await end_interrupted(self.ledger, self.receipts, self.session, message, flight.detail)
            return
        if outcome == TurnOutcome.API_ERROR:
            await self._on_api_error(flight)
            return
        # SESSION_ENDED: the session died under the message; the restart recovers it.
        if self._restart_reason is None:
            self.request_restart(flight.detail or "the agent session ended")

    async def _on_api_error(self, flight: InFlight) -> None:
        session = self.session
        kind = flight.screen
        reset_at = flight.reset_at
        # The error screen may be drawn a moment after the record says "API error": look a few
        # times, then fall back to the error text itself.
        deadline = time.monotonic() + 1.0
        while kind is None and session is not None and not session.ended:
            screen = await session.screen()
            if screen.kind in ERROR_SCREENS:
                kind, reset_at = screen.kind, screen.reset_at
            elif time.monotonic() > deadline:
                break
            else:
                await asyncio.sleep(0.1)
        words = error_text_of(self.profile)  # the runtime's own words for its faults
        if kind is None:
            kind, reset_at = words.classify(flight.detail)
        message = flight.message
        if kind == ScreenKind.RATE_LIMITED:
            wait = words.seconds_until_reset(reset_at)
            wait = self.agent.rate_limit_recheck if wait is None or wait <= 0 else wait
            until_text = time.strftime("%H:%M", time.localtime(time.time() + wait))
            detail = f"rate-limited until {until_text}"
            self.enter_waiting(WaitKind.RATE_LIMIT, detail, until=time.monotonic() + wait)
            self.receipts.emit(message, ReceiptKind.WAITING, detail)
            await self._requeue(message, detail, enforce_limit=False)
        elif kind == ScreenKind.CONTEXT_FULL:
            await self._requeue(message, "the agent's context was full; starting fresh")
            self.request_restart("context full", resume=False)
        else:
            await self._requeue(message, f"the turn ended in an API error: {flight.detail}"[:300])
            self.waiting_until = time.monotonic() + 2.0  # don't hammer a failing API
            await self._wait_wake(2.0)

    async def _requeue(self, message: Message, reason: str, *, enforce_limit: bool = True) -> None:
        try:
            moved = await self.ledger.requeue_victim(
                message.id,
                message.fence,
                reason,
                actor="dispatcher",
                enforce_limit=enforce_limit,
            )
        except LedgerError as exc:
            log.warning("message %s: requeue refused: %s", message.id, exc)
            return
        if moved.state == "quarantined":
            self.receipts.emit(moved, ReceiptKind.FAILED, moved.reason or "quarantined")

    # ------------------------------------------------------------------ sessions

    def _notify(self, message: Message, status: ReceiptKind, detail: str) -> None:
        self.receipts.emit(message, status, detail)

    async def _start_session(self, resume: bool) -> bool:
        owner = f"{self.supervisor_id}/{self.agent.name}/{next(self._generation)}"
        session = AgentSession(
            agent=self.agent,
            profile=self.profile,
            ledger=self.ledger,
            tmux=self.tmux,
            state_dir=self.state_dir,
            owner=owner,
            injection=self.config.injection,
            lease_seconds=self.config.ledger.lease_seconds,
            observer=self.observer,
            notify=self._notify,
            reply_command=reply_command(self.config),
        )
        session.on_event = self.progress.event
        session.before_inject = self.before_inject
        self.session = session
        self.health, self.detail = AgentHealth.STARTING, ""
        try:
            await session.start(resume)
        except AgentCommandNotFound as exc:
            self.degrade(str(exc))  # a restart loop cannot install a CLI
            print(f"agentbridge: {exc}", file=sys.stderr, flush=True)
            return False
        except Exception as exc:
            log.error("agent %s: could not start: %s", self.agent.name, exc)
            log.debug("start failure", exc_info=True)
            self.detail = f"could not start: {exc}"
            self.request_restart(self.detail)
            return False
        if not await session.wait_ready(self.agent.launch_grace):
            if session.alive():
                self.detail = "the agent did not become ready within the launch grace"
            else:
                said = await session.last_words()
                self.detail = "the agent exited during startup" + (f": {said}" if said else "")
            log.warning("agent %s: %s", self.agent.name, self.detail)
            self.request_restart(self.detail)
            return False
        self.health = AgentHealth.HEALTHY
        log.info("agent %s: ready (%s)", self.agent.name, owner)
        self.wake.set()
        return True

    async def _restart(self) -> None:
        reason = self._restart_reason or "restart"
        resume = self._restart_resume
        self.busy_restarting = True
        try:
            self.health, self.detail = AgentHealth.RESTARTING, reason
            old = self.session
            if old is not None:
                await old.stop(kill=True)
                await self._recover(old, reason)
            self.restart_count += 1
            if self.breaker.record():
                self.degrade(
                    f"crash loop: {len(self.breaker.restarts)} restarts within "
                    f"{self.agent.restart_window:.0f}s; last: {reason}"
                )
                self._restart_reason = None
                for queued in await self.ledger.list_messages(
                    state="queued", agent=self.agent.name
                ):
                    self.receipts.emit(
                        queued, ReceiptKind.WAITING, f"agent {self.agent.name} is degraded"
                    )
                return
            delay = self.breaker.backoff()
            if delay:
                await asyncio.sleep(delay)
            self._restart_reason = None
            log.warning("agent %s: restarting (%s)", self.agent.name, reason)
            await self._start_session(resume)
        finally:
            self.busy_restarting = False

    async def _recover(self, old: AgentSession, reason: str) -> None:
        victims = await self.ledger.victims(owner=old.owner)
        if not victims:
            return
        transcript = old._transcript_path
        hooks = old.spec.hook_events if old.spec else None
        evidence = read_evidence(self.profile, transcript, hooks)
        report = await recover_victims(
            self.ledger, victims, evidence, f"re-sent after a restart ({reason})", self.receipts
        )
        self.last_recovery = report.as_dict()

    async def _recover_previous(self) -> None:
        """In-flight rows of this agent left by an earlier supervisor (crash, kill -9)."""
        victims = await self.ledger.victims(agent=self.agent.name)
        if not victims:
            return
        with contextlib.suppress(Exception):
            await self.tmux.kill_session(f"ab-{self.agent.name}")
        try:
            spec = self.profile.prepare(self.agent, self.state_dir, True)
            transcript = self.profile.transcript_path(spec, None)
            evidence = read_evidence(self.profile, transcript, spec.hook_events)
        except Exception as exc:
            log.warning("agent %s: no evidence for reconcile: %s", self.agent.name, exc)
            from agentbridge.supervisor.recovery import Evidence

            evidence = Evidence()
        report = await recover_victims(
            self.ledger, victims, evidence, "re-sent after the bridge restarted", self.receipts
        )
        self.last_recovery = report.as_dict()
        log.warning(
            "agent %s: recovered %d victim(s) of an earlier run: %s",
            self.agent.name,
            len(victims),
            self.last_recovery,
        )

    async def stop(self) -> None:
        """Stop dispatching and end the session (its in-flight message stays a victim)."""
        self._stopping = True
        self.wake.set()
        if self.session is not None:
            await self.session.stop(kill=True)
        self.health = AgentHealth.STOPPED

    async def probe(self) -> bool:
        """Health probe (after a wake): restart if the agent is gone. True when healthy.

        A restart already under way (health may have seen the death first) is not doubled.
        """
        if self.busy_restarting or self._restart_reason is not None:
            return False
        session = self.session
        if session is None or session.ended:
            return False
        if not session.alive():
            session.mark_dead("agent gone after the host woke")
            self.request_restart("agent gone after the host woke")
            return False
        return True

    def snapshot(self) -> dict[str, Any]:
        """Live state for ``status``."""
        session = self.session
        flight = session.current if session else None
        return {
            "runtime": self.agent.runtime,
            "health": str(self.health),
            "detail": self.detail,
            "restarts": self.restart_count,
            "pid": session.pane_pid if session else None,
            "tmux_session": session.session_name if session else None,
            "in_flight_message": flight.message.id if flight else None,
            "human_turns": session.human_turns if session else 0,
            "corrupt_lines": session.corrupt_lines if session else 0,
            "last_recovery": self.last_recovery,
            "victims": sum(len(ids) for ids in self.last_recovery.values()),
            "state_dir": str(Path(self.state_dir)),
        }
