"""The agent's own evidence (transcript and hook lines) applied to the ledger, in arrival order.

Kept apart from the session host (``agent/host.py``: launch, inject, stop) because this is the
half that decides what the ledger records: a prompt seen → ``accepted``, its turn end seen →
``completed`` with the reply, an interrupt or API error → the flight ends for the caller.

Why the queue can look behind its head: with a fast model the prompt line and the turn end
arrive in one write (Claude Code batches them, the fake agent too), and committing ``accepted``
and then ``completed`` is two fsyncs, one after the other, before the reply can go out. When the
turn end of the same attempt is already queued behind the prompt, the completion commit alone
records both (``completed`` may follow ``claimed`` or ``submitted``): bench_agent_host's turn end
→ completion went 4.12–5.86 → 1.83–2.37 ms p50 with it (the release before: 1.71–1.81 ms).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from agentbridge.agent.turn import InFlight, TurnOutcome
from agentbridge.crashpoints import crash_point
from agentbridge.events import AgentEvent, AgentEventKind, TranscriptParser
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.plugin.protocols import HookParser, PromptLearner

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentbridge.config import AgentConfig

__all__ = ["EvidenceMixin", "EvidenceQueue"]

log = logging.getLogger(__name__)


class EvidenceQueue:
    """Agent events in arrival order, for one consumer that may look at what waits behind."""

    def __init__(self) -> None:
        self._items: deque[AgentEvent] = deque()
        self._ready = asyncio.Event()

    def put(self, event: AgentEvent) -> None:
        self._items.append(event)
        self._ready.set()

    async def get(self) -> AgentEvent:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def turn_end_queued(self, message_id: int, attempt: int) -> bool:
        """The turn end of this attempt is already waiting (it came in the prompt's read)."""
        return any(
            event.kind == AgentEventKind.TURN_COMPLETED
            and event.envelope is not None
            and event.envelope.message_id == message_id
            and event.envelope.attempt == attempt
            for event in self._items
        )


class EvidenceMixin:
    """Evidence methods of ``AgentSession`` (kept apart so each file has one job)."""

    agent: AgentConfig
    ledger: LedgerStore
    owner: str
    lease_seconds: float
    current: InFlight | None
    last_progress: float
    last_heartbeat: float
    human_turns: int
    corrupt_lines: int
    _events: EvidenceQueue
    _parser: TranscriptParser | None
    _hook_parser: HookParser | None
    _learner: PromptLearner | None  #: the hook parser, when it learns prompts
    #: (message id, attempt, where the prompt was seen) whose ``accepted`` rides in its
    #: completion commit (prompt and turn end came in one read)
    _accept_rides: tuple[int, int, str] | None = None
    #: sees every event of the flight (progress: ``supervisor/progress.py``); never raises
    on_event: Callable[[Message, AgentEvent], None] | None = None

    if TYPE_CHECKING:
        notify: Callable[[Message, ReceiptKind, str], None]

    # ------------------------------------------------------------------ ledger moves

    def receipt(self, flight: InFlight, status: ReceiptKind) -> None:
        """Each receipt once per flight, in order (injected before working)."""
        if status not in flight.receipts:
            flight.receipts.add(status)
            self.notify(flight.message, status, "")

    async def release(self, flight: InFlight, why: str) -> None:
        message = flight.message
        log.warning("message %s: released (%s)", message.id, why)
        await self.ledger_call(
            self.ledger.release(message.id, message.fence, why, actor=self.owner)
        )
        flight.finish(TurnOutcome.NOT_DELIVERED, why)

    async def ledger_call(self, call: Any) -> Any:
        try:
            return await call
        except LedgerError as exc:  # stale fence etc.: recorded by the ledger; we stop acting
            log.warning("ledger refused: %s", exc)
            if self.current is not None:
                self.current.finish(TurnOutcome.SESSION_ENDED, f"ledger refused: {exc}")
            return None

    # ------------------------------------------------------------------ lines in

    def _on_transcript_line(self, line: str) -> None:
        if self._parser is None:
            return
        before = self._parser.corrupt_lines
        events = self._parser.feed(line)
        self.corrupt_lines += self._parser.corrupt_lines - before
        learner = self._learner
        for event in events:
            self._events.put(event)
            if learner is not None:
                for held in learner.learn(event):  # a Stop hook that came before this prompt
                    self._events.put(held)
        self.last_progress = time.monotonic()

    def _on_hook_line(self, line: str) -> None:
        if self._hook_parser is None:
            return
        try:
            record = json.loads(line)
        except ValueError:
            self.corrupt_lines += 1
            log.warning("agent %s: corrupt hook record skipped", self.agent.name)
            return
        if isinstance(record, dict):
            for event in self._hook_parser.feed(record):
                self._events.put(event)
        self.last_progress = time.monotonic()

    # ------------------------------------------------------------------ applying

    async def _consume_events(self) -> None:
        """Apply events in arrival order (accept before complete), one at a time."""
        while True:
            event = await self._events.get()
            try:
                await self._apply(event)
            except Exception:
                log.exception("agent %s: applying %s failed", self.agent.name, event.kind)

    async def _apply(self, event: AgentEvent) -> None:
        flight = self.current
        env = event.envelope
        if env is None:
            if event.kind == AgentEventKind.PROMPT_RECORDED:
                self.human_turns += 1
                log.info("agent %s: a turn the bridge did not inject (ignored)", self.agent.name)
            return
        if (
            flight is None
            or env.message_id != flight.message.id
            or env.attempt != (flight.message.attempt)
        ):
            log.debug(  # duplicates of evidence already applied (hook first, transcript later)
                "agent %s: %s for message %s attempt %s is not in flight here (ignored)",
                self.agent.name,
                event.kind,
                env.message_id,
                env.attempt,
            )
            return
        message = flight.message
        if self.on_event is not None:
            self.on_event(message, event)
        if event.kind in (AgentEventKind.ASSISTANT_TEXT, AgentEventKind.PROGRESS):
            await self._maybe_heartbeat(message)
        elif event.kind == AgentEventKind.PROMPT_RECORDED:
            await self._accept(flight, event)
        elif event.kind == AgentEventKind.TURN_COMPLETED:
            flight.accepted.set()
            crash_point("before_complete")
            detail = f"turn end seen in {event.source}"
            rides = self._accept_rides
            if rides is not None and rides[:2] == (message.id, message.attempt):
                detail += f" (the prompt with it, in the {rides[2]})"
            done = await self.ledger_call(
                self.ledger.complete(
                    message.id, message.fence, event.text, actor=self.owner, detail=detail
                )
            )
            if done is not None:
                crash_point("after_outbox_row")
                flight.finish(TurnOutcome.COMPLETED)
        elif event.kind == AgentEventKind.API_ERROR:
            await self.ledger.note(message.id, self.owner, "api_error", event.text[:500])
            flight.finish(TurnOutcome.API_ERROR, event.text)
        elif event.kind == AgentEventKind.TURN_ABORTED:
            flight.finish(TurnOutcome.ABORTED, f"the {event.source} records the interrupt")

    async def _accept(self, flight: InFlight, event: AgentEvent) -> None:
        """The prompt is in the agent's record: ``accepted``, unless its turn end is already
        queued (then the completion commit records both: one fsync, not two)."""
        message = flight.message
        if not flight.accepted.is_set():
            flight.accepted.set()
            # the record can beat the injector's return
            self.receipt(flight, ReceiptKind.INJECTED)
            self.receipt(flight, ReceiptKind.WORKING)
        if self._events.turn_end_queued(message.id, message.attempt):
            self._accept_rides = (message.id, message.attempt, event.source)
        else:
            await self.ledger_call(
                self.ledger.mark_accepted(
                    message.id, message.fence, actor=self.owner, detail=f"seen in {event.source}"
                )
            )
        crash_point("after_accept")  # the boundary is the same; its record may ride with completion

    async def _maybe_heartbeat(self, message: Message) -> None:
        now = time.monotonic()
        if now - self.last_heartbeat < self.lease_seconds / 4:
            return
        self.last_heartbeat = now
        await self.ledger_call(self.ledger.heartbeat(message.id, message.fence, self.lease_seconds))
