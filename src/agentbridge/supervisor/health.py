"""Health of one agent: is it alive, making progress, or showing a known screen?

Signals: the agent process gone (a signal-0 probe every 0.25 s: death is seen well within 1 s),
no transcript/hook activity while a message is in flight for longer than ``progress_timeout``
(never a reply deadline: an agent that is working is never killed), and known screens (rate
limit, context full, login, permission) acted on only when a second signal confirms them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from agentbridge.agent.host import AgentSession
from agentbridge.agent.turn import InFlight, TurnOutcome
from agentbridge.config import AgentConfig
from agentbridge.kinds import WaitKind
from agentbridge.plugin.protocols import ScreenKind, ScreenState
from agentbridge.supervisor.interrupts import PUT_BACK_DETAIL, prompt_put_back


class AgentWorker(Protocol):
    """What the monitor needs of the dispatcher's worker (so health never imports it)."""

    agent: AgentConfig
    session: AgentSession | None
    busy_restarting: bool
    waiting_for: WaitKind | None

    def request_restart(self, reason: str, resume: bool | None = None) -> None: ...
    def enter_waiting(self, why: WaitKind, detail: str, until: float | None = None) -> None: ...
    def leave_waiting(self, why: WaitKind) -> None: ...
    def degrade(self, detail: str) -> None: ...


log = logging.getLogger(__name__)


class CrashLoopBreaker:
    """Too many restarts inside a window → stop restarting (degraded) and tell people."""

    def __init__(
        self, max_restarts: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self.clock = clock
        self.restarts: collections.deque[float] = collections.deque()

    def record(self) -> bool:
        """Count a restart; True when the breaker trips."""
        now = self.clock()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.window:
            self.restarts.popleft()
        return len(self.restarts) > self.max_restarts

    def backoff(self) -> float:
        """Delay before the next restart: 0 for the first, then 1, 2, 4 … 30 s."""
        recent = len(self.restarts)
        return 0.0 if recent <= 1 else min(30.0, 2.0 ** (recent - 2))

    def reset(self) -> None:
        """A human asked for a restart: start counting afresh."""
        self.restarts.clear()


class HealthMonitor:
    """Watches one worker's current session and asks the worker to act."""

    def __init__(self, worker: AgentWorker, interval: float = 0.25) -> None:
        self.worker = worker
        self.interval = interval
        self._last_screen_check = 0.0
        self._last_discovery = 0.0
        self._nudged = asyncio.Event()
        self._flight_key: tuple[int, int] | None = None
        self._kind: ScreenKind | None = None
        self._since = 0.0
        self._count = 0
        self._put_back: tuple[int, int] | None = None

    def nudge(self) -> None:
        """A message is about to go in flight: switch to the fast cadence now.

        The screen's first look waits one fast tick: at the claim it would read the pane while
        the injector reads its box and pastes (one control client, two cores).
        """
        first_look = time.monotonic() - 1.0 + self.interval
        self._last_screen_check = max(self._last_screen_check, first_look)
        self._nudged.set()

    async def run(self) -> None:
        """Tick forever."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("agent %s: health tick failed", self.worker.agent.name)
            session = self.worker.session
            busy = session is not None and session.current is not None
            # 0.25 s with a message in flight; 0.75 s when idle (a death is still seen < 1 s,
            # and twenty idle agents cost a third of the wake-ups)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._nudged.wait(), self.interval if busy else self.interval * 3
                )
            self._nudged.clear()

    async def tick(self) -> None:
        """One look at the session."""
        worker = self.worker
        session = worker.session
        if session is None or worker.busy_restarting:
            return
        if not session.ended and not session.alive():
            log.warning("agent %s: process exited", worker.agent.name)
            session.mark_dead("agent process exited")
            worker.request_restart("agent process exited")
            return
        if session.ended:
            return
        now = time.monotonic()
        # a glob on some profiles: 1 s until a transcript is known, then 5 s (a moved file)
        every = 1.0 if session._transcript_path is None else 5.0
        if now - self._last_discovery >= every:
            self._last_discovery = now
            await session.discover_transcript()
        flight = session.current
        status = session.agent_status() if flight is not None or worker.waiting_for else None
        if status == "waiting":
            session.last_progress = now  # a person must answer: not a hang
            worker.enter_waiting(WaitKind.PERMISSION, "the agent asks for permission in its pane")
        elif worker.waiting_for == WaitKind.PERMISSION and status in ("busy", "idle"):
            worker.leave_waiting(WaitKind.PERMISSION)
        if flight is not None and status != "waiting":
            stalled = now - session.last_progress
            if stalled > worker.agent.progress_timeout:
                worker.request_restart(
                    f"no progress for {stalled:.0f}s while message {flight.message.id}"
                    " was in flight (hang)"
                )
                return
        if flight is not None and now - self._last_screen_check >= 1.0:
            self._last_screen_check = now
            await self._check_screen()

    async def _check_screen(self) -> None:
        session = self.worker.session
        if session is None or session.current is None:
            return
        flight = session.current
        key = (flight.message.id, flight.message.attempt)
        screen = await session.screen()
        now = time.monotonic()
        if key != self._flight_key or screen.kind != self._kind:
            self._flight_key, self._kind = key, screen.kind
            self._since, self._count = now, 0
        self._count += 1
        if self._interrupted_before_answer(session, flight, key, screen):
            return
        if self._count < 2:
            return  # a screen alone is weak: it must stay up across two checks…
        kind = screen.kind
        if kind == ScreenKind.PERMISSION_PROMPT:
            session.last_progress = now
            self.worker.enter_waiting(
                WaitKind.PERMISSION, "the agent asks for permission in its pane"
            )
        elif kind == ScreenKind.LOGIN_REQUIRED:
            self.worker.degrade("the agent CLI needs a login: run it once by hand")
        elif (
            kind in (ScreenKind.RATE_LIMITED, ScreenKind.CONTEXT_FULL, ScreenKind.API_ERROR)
            and session.last_progress < self._since
        ):
            # …and the agent's own record must have been silent since it appeared: an error
            # left on screen by an earlier turn is not this turn's error
            flight.finish_from_screen(kind, screen.reset_at, screen.detail)

    def _interrupted_before_answer(
        self, session: AgentSession, flight: InFlight, key: tuple[int, int], screen: ScreenState
    ) -> bool:
        """Esc before the first token (Claude records nothing): the prompt back in the box
        while idle, on two checks in a row (``interrupts.prompt_put_back``). True when acted."""
        accepted = flight.accepted.is_set()
        status = session.agent_status() if accepted else None
        if not prompt_put_back(flight.message, accepted, status, screen):
            self._put_back = None
            return False
        if self._put_back != key:
            self._put_back = key  # first sight: wait for the next check
            return False
        log.info("message %s: the prompt is back in the box, no turn end", key[0])
        flight.finish(TurnOutcome.ABORTED, PUT_BACK_DETAIL)
        return True
