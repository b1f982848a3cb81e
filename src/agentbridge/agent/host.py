"""One agent session: a CLI in tmux, the message in flight in it, and the evidence it leaves.

The host pastes one message at a time and keeps it in flight until the agent's own transcript
or hooks prove that message's turn completed. "Pasted" and "Enter pressed" are recorded
(``submitted``) but never taken for done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge.agent import attachments
from agentbridge.agent.evidence import EvidenceMixin, EvidenceQueue
from agentbridge.agent.injector import InjectionOutcome, Injector, InjectorConfig
from agentbridge.agent.screen_turn import run_weak_turn
from agentbridge.agent.tail import FileTail
from agentbridge.agent.tmux import TmuxServer
from agentbridge.agent.turn import (
    InFlight,
    TurnOutcome,
    build_prompt,
    paste_limit,
)
from agentbridge.config import AgentConfig, InjectionConfig
from agentbridge.events import TranscriptParser
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.store import LedgerStore
from agentbridge.models import Message
from agentbridge.plugin.protocols import (
    HookParser,
    LaunchSpec,
    PromptLearner,
    RuntimeProfile,
    ScreenKind,
    ScreenState,
)

log = logging.getLogger(__name__)


class AgentCommandNotFound(Exception):
    """The agent's CLI is not installed where its PATH looks: restarting cannot help."""


class AgentSession(EvidenceMixin):
    """One incarnation of one agent in tmux. A restart makes a new ``AgentSession``.

    What its evidence makes the ledger record: ``agent/evidence.py`` (``EvidenceMixin``).
    """

    def __init__(
        self,
        *,
        agent: AgentConfig,
        profile: RuntimeProfile,
        ledger: LedgerStore,
        tmux: TmuxServer,
        state_dir: Path,
        owner: str,
        injection: InjectionConfig | None = None,
        lease_seconds: float = 600.0,
        observer: Any = None,
        notify: Callable[[Message, ReceiptKind, str], None] | None = None,
        reply_command: str | None = None,
    ) -> None:
        self.agent = agent
        self.profile = profile
        self.ledger = ledger
        self.tmux = tmux
        self.state_dir = state_dir
        self.owner = owner
        self.injection = injection or InjectionConfig()
        self.lease_seconds = lease_seconds
        self.observer = observer
        self.reply_command = reply_command
        self.notify = notify or (lambda message, status, detail: None)
        self.session_name = f"ab-{agent.name}"
        self.spec: LaunchSpec | None = None
        self.pane_id: str | None = None
        self.pane_pid: int | None = None
        self.injector: Injector | None = None
        self.current: InFlight | None = None
        self.started_at = time.monotonic()
        self.last_progress = time.monotonic()
        self.last_heartbeat = 0.0
        self.human_turns = 0
        self.corrupt_lines = 0
        self.ended = False
        self._events = EvidenceQueue()
        self._tails: list[FileTail] = []
        self._parser: TranscriptParser | None = None
        self._hook_parser: HookParser | None = None
        self._learner: PromptLearner | None = None  # the hook parser, when it learns prompts
        self._consumer: asyncio.Task[None] | None = None
        self._transcript_path: Path | None = None
        self._transcript_tail: FileTail | None = None
        self._launched = False
        self._finder: asyncio.Task[None] | None = None
        #: asked right before every paste (a fleet node: does it still own the agent?)
        self.before_inject: Callable[[], Awaitable[bool]] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, resume: bool) -> None:
        """Launch the CLI in a fresh tmux session and start following its transcript/hooks."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spec = self.profile.prepare(self.agent, self.state_dir, resume)
        program = self.spec.argv[0]
        if shutil.which(program, path=self.spec.env.get("PATH")) is None:
            raise AgentCommandNotFound(
                f"agent {self.agent.name}: {program!r} not found on the agent's PATH "
                f"(install it, or set [agents.{self.agent.name}] command to its full path)"
            )
        await attachments.sweep_stale(self.ledger, self.spec.cwd)  # left by a crash
        if await self.tmux.has_session(self.session_name):
            await self.tmux.kill_session(self.session_name)
        self.spec.cwd.mkdir(parents=True, exist_ok=True)
        self.pane_id = await self.tmux.new_session(
            self.session_name, self.spec.argv, self.spec.env, self.spec.cwd
        )
        self.pane_pid = await self.tmux.pane_pid(self.pane_id)
        self.started_at = self.last_progress = time.monotonic()
        self.injector = Injector(
            self.tmux,
            self.pane_id,
            input_box=lambda screen: self.profile.screen_state(screen, self.spec).input_text,
            config=InjectorConfig(
                settle=self.injection.settle_ms / 1000,
                verify_timeout=self.injection.verify_timeout,
            ),
        )
        self._consumer = asyncio.create_task(
            self._consume_events(), name=f"agent-events:{self.agent.name}"
        )
        if self.spec.hook_events is not None:
            self._hook_parser = self.profile.new_hook_parser()
            if isinstance(self._hook_parser, PromptLearner):
                self._learner = self._hook_parser
            await self._follow(self.spec.hook_events, self._on_hook_line)
        await self.discover_transcript()
        self._launched = True
        log.info(
            "agent %s started in tmux pane %s (pid %s)",
            self.agent.name,
            self.pane_id,
            self.pane_pid,
        )

    async def discover_transcript(self) -> Path | None:
        """Start following the transcript once its path is known (Codex names it late), and
        move to where the CLI really writes if the predicted file never appeared (a CLI that
        spells the cwd differently, ``/clear``, a resumed session)."""
        if self.spec is None:
            return None
        current = self._transcript_path
        if current is not None and (current.exists() or self._transcript_tail is None):
            return current
        path = self.profile.transcript_path(self.spec, self.pane_pid)
        if path is None or path == current:
            return current
        if current is not None and self._transcript_tail is not None:
            if not path.exists():
                return current
            log.info("agent %s: transcript is %s", self.agent.name, path)
            self._transcript_path = path
            self._transcript_tail.switch_to(path)
            if self._parser is not None:
                self._parser.reset()
            return path
        self._transcript_path = path
        self._parser = self.profile.new_parser()
        # named only after launch (Codex: at the first turn): all of it is this session's, and
        # its first lines hold the prompt an interrupt or turn end must be matched to
        late = self._launched
        self._transcript_tail = await self._follow(path, self._on_transcript_line, late)
        return path

    async def _find_transcript(self, flight: InFlight, within: float = 30.0) -> None:
        """Look for a transcript the CLI names only at the first turn (Codex's rollout) every
        20 ms while this first message waits for its record, not at health's 1 s pace: with
        no prompt hook, the transcript's prompt line is the acceptance record."""
        deadline = time.monotonic() + within
        try:
            while self._transcript_tail is None and not flight.done.is_set() and not self.ended:
                await self.discover_transcript()
                if self._transcript_tail is not None or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.02)
        finally:
            self._finder = None

    async def _follow(self, path: Path, on_line: Any, from_start: bool = False) -> FileTail:
        # Start at the current end: earlier turns belong to earlier sessions (reconciled apart).
        offset = path.stat().st_size if path.exists() and not from_start else 0
        # inotify does the work; the size check behind it (watchdog #276) can be unhurried
        tail = FileTail(
            path, on_line, offset=offset, observer=self.observer, reconcile_interval=2.0
        )
        await tail.start()
        self._tails.append(tail)
        return tail

    async def stop(self, kill: bool = True) -> None:
        """Stop following and (by default) kill the tmux session; the in-flight message stays
        in flight in the ledger: it is a victim for the recovery that follows."""
        self.ended = True
        if self.current is not None:
            self.current.finish(TurnOutcome.SESSION_ENDED, "session stopped")
        for tail in self._tails:
            with contextlib.suppress(Exception):
                await tail.stop()
        self._tails.clear()
        if self._finder is not None:
            self._finder.cancel()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if kill:
            with contextlib.suppress(Exception):
                await self.tmux.kill_session(self.session_name)

    def alive(self) -> bool:
        """The agent process is still there (a signal-0 probe: cheap, works on macOS too)."""
        if self.ended or self.pane_pid is None:
            return False
        try:
            os.kill(self.pane_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(self.pane_pid)

    def mark_dead(self, why: str) -> None:
        """Health saw the agent die: the message in flight ends here as a victim."""
        self.ended = True
        if self.current is not None:
            self.current.finish(TurnOutcome.SESSION_ENDED, why)

    # ------------------------------------------------------------------ state

    async def screen(self) -> ScreenState:
        """Read the screen through the profile (fallback evidence)."""
        if self.pane_id is None:
            return ScreenState(ScreenKind.UNKNOWN)
        try:
            text = await self.tmux.capture(self.pane_id)
        except Exception:
            return ScreenState(ScreenKind.UNKNOWN)
        return self.profile.screen_state(text, self.spec)

    def agent_status(self) -> str | None:
        """The agent's own idle/busy/waiting, when the CLI publishes one."""
        if self.spec is None:
            return None
        try:
            return self.profile.agent_status(self.spec, self.pane_pid)
        except Exception:
            log.debug("agent_status failed", exc_info=True)
            return None

    async def is_idle(self) -> bool:
        """Ready for a new prompt: the agent's own state first, the screen as fallback."""
        status = self.agent_status()
        if status is not None:
            # the agent's own word; a dialog on screen is caught by the injector's box check
            return status == "idle"
        return (await self.screen()).kind == ScreenKind.READY

    async def last_words(self) -> str:
        """The last non-blank line the pane shows (why an agent died at startup)."""
        if self.pane_id is None:
            return ""
        try:
            screen = await self.tmux.capture(self.pane_id, history=50)
        except Exception:
            return ""
        lines = [line.strip() for line in screen.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("Pane is dead")]
        return lines[-1][:200] if lines else ""

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the CLI is up and idle (launch grace), or the deadline/death."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.agent_status() in (None, "idle"):
                # at launch the screen must agree too: CLIs redraw while they start
                screen = await self.screen()
                if screen.kind == ScreenKind.READY and not screen.input_text:
                    return True
            await asyncio.sleep(0.05)
        return False

    # ------------------------------------------------------------------ one message

    async def run_message(self, message: Message, idle_timeout: float = 30.0) -> InFlight:
        """Inject a claimed message and wait until its turn ends or the session does.

        Returns the ``InFlight`` record; the ledger has been moved accordingly except for
        SESSION_ENDED (the caller's recovery handles victims) and API_ERROR (health decides).
        """
        assert self.injector is not None, "session not started"
        assert self.spec is not None
        limit = paste_limit(self.profile, self.injection)
        prompt, envelope = build_prompt(message, self.spec.cwd, limit, self.reply_command)
        flight = InFlight(message=message, envelope=envelope)
        self.current = flight
        try:
            if self.profile.strong_completion:
                await self._deliver(flight, prompt, idle_timeout)
            elif await self._wait_idle(flight, idle_timeout) and await self._may_inject(flight):
                await run_weak_turn(self, flight)  # screen evidence only (generic CLIs)
            if flight.outcome is None:
                await flight.done.wait()
        finally:
            self.current = None
            if self.spec is not None:
                await attachments.after_turn(self.ledger, self.spec.cwd, message)
        return flight

    async def _wait_idle(self, flight: InFlight, idle_timeout: float) -> bool:
        """Inject only into an idle agent (Codex merges a mid-turn prompt into the turn)."""
        deadline = time.monotonic() + idle_timeout
        while not await self.is_idle():
            if not self.alive() or self.ended:
                flight.finish(TurnOutcome.SESSION_ENDED, "agent gone before injection")
                return False
            if time.monotonic() > deadline:
                await self.release(flight, "agent did not become idle")
                return False
            await asyncio.sleep(0.01)  # the agent just finished a turn: it is idle in ms
        return True

    async def _may_inject(self, flight: InFlight) -> bool:
        """False (the turn ends, the pane untouched) when this node lost the agent."""
        if self.before_inject is None or await self.before_inject():
            return True
        flight.finish(TurnOutcome.SESSION_ENDED, "this node no longer owns the agent")
        return False

    async def _deliver(self, flight: InFlight, prompt: str, idle_timeout: float) -> None:
        assert self.injector is not None
        message = flight.message
        if not await self._wait_idle(flight, idle_timeout):
            return
        if self._transcript_tail is None and self._finder is None:
            self._finder = asyncio.create_task(self._find_transcript(flight))
        if not await self._may_inject(flight):
            return
        result = await self.injector.inject(prompt, flight.accepted)
        flight.injection = result
        log.info(
            "message %s: injection %s after %s Enter(s) %s",
            message.id,
            result.outcome,
            result.enter_presses,
            result.timings,
        )
        if result.outcome in (InjectionOutcome.ACCEPTED, InjectionOutcome.SUBMITTED_UNVERIFIED):
            await self.ledger_call(
                self.ledger.mark_submitted(message.id, message.fence, actor=self.owner)
            )
            self.receipt(flight, ReceiptKind.INJECTED)
            return
        if result.outcome == InjectionOutcome.PANE_DEAD:
            self.mark_dead("the agent's pane died before the paste")
            await self.release(flight, "the agent died before the message was pasted")
            return
        if result.outcome in (InjectionOutcome.BOX_NOT_EMPTY, InjectionOutcome.BOX_NOT_FOUND):
            why = (
                "the input box holds text someone else typed; not pasting over it"
                if result.outcome == InjectionOutcome.BOX_NOT_EMPTY
                else "no input box on screen"
            )
            await self.release(flight, why)
            return
        # PASTE_NOT_VISIBLE / NOT_SUBMITTED: our own text may sit in the box: clear it (it is
        # ours, checked by the injector), then give the message back without an attempt.
        with contextlib.suppress(Exception):
            await self.tmux.send_key(self.pane_id or "", "C-u")
        await self.release(flight, f"injection {result.outcome}")


def _is_zombie(pid: int) -> bool:
    """A dead-but-unreaped process still answers signal 0; /proc tells (Linux only)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False  # no /proc (macOS): tmux reaps its children promptly
