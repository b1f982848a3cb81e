"""The fake agent's state machine and event loop: keys in, turns, transcript, hooks, screen."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
import time
import tty
import uuid
from dataclasses import dataclass
from types import FrameType
from typing import Any

from agentbridge.fakeagent.hooks import HookRunner
from agentbridge.fakeagent.inputbox import InputBox
from agentbridge.fakeagent.keys import InputParser, KeyEvent, KeyKind
from agentbridge.fakeagent.options import Options, config_dir
from agentbridge.fakeagent.permission import TOOL, Decision, PermissionAsk
from agentbridge.fakeagent.prompt import (
    Faults,
    api_error,
    env_faults,
    parse_faults,
    progress_steps,
    reply_text,
    swallowed_enters,
)
from agentbridge.fakeagent.screen import (
    BRACKETED_PASTE_OFF,
    BRACKETED_PASTE_ON,
    ScreenModel,
    render,
    short,
    terminal_size,
)
from agentbridge.fakeagent.session_file import SessionFile
from agentbridge.fakeagent.transcript_writer import MODEL, TranscriptWriter

BATCH_WINDOW = 0.3  # replies faster than this share one flush with the user line
CRASH_EXIT = 3
DOUBLE_CTRL_C = 1.5
HISTORY_KEEP = 200  # past screen entries kept for redraws


@dataclass
class Turn:
    """The prompt being answered."""

    prompt: str
    prompt_id: str
    faults: Faults
    started: float
    deadline: float | None = None  # None: hang, or waiting on the permission dialog
    delay: float = 0.0
    waiting: bool = False
    ask: PermissionAsk | None = None  # ``#fake:tool``: the PermissionRequest hooks running
    note: str = ""  # what became of the tool call, the reply's first line
    steps: list[float] | None = None  #: when each "step i/N" line is due (``#fake:steps=N``)


@dataclass
class _Signals:
    terminate: bool = False


class FakeAgent:
    """One interactive session on the terminal at ``in_fd``/``out_fd``."""

    def __init__(self, opts: Options, in_fd: int = 0, out_fd: int = 1) -> None:
        self.opts = opts
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.cwd = os.getcwd()
        self.config = config_dir()
        self.session_id = opts.session_id
        self.transcript = TranscriptWriter(self.config, self.cwd, self.session_id)
        self.hooks = HookRunner(self.config, self.cwd, opts.settings)
        self.session_file = SessionFile(self.config, self.cwd)
        self.parser = InputParser()
        self.box = InputBox()
        self.model = ScreenModel(
            history=[f"✻ Fake agent (agentbridge) · session {opts.session_id}"]
        )
        self.turn: Turn | None = None
        self.queue: list[str] = []
        self.first_fault: Faults | None = env_faults(os.environ.get("FAKE_AGENT_FAULT"))
        # A paste read but not yet taken in (drawn), and the keys that came after it. Claude
        # Code swallows an Enter that arrives while it is still taking in a paste (measured:
        # paste and Enter in one tmux command, 1 of 8 lost); once the text is drawn, an Enter
        # is taken at once. Modelled: a paste shows ``paste_delay`` after it was read, and not
        # before the read that brought it is done; an Enter before that is swallowed.
        self.pending_paste: tuple[str, float] | None = None
        self.deferred: list[KeyEvent] = []
        self.enters_swallowed = 0  # by a ``#fake:swallow=N`` directive, for the current box
        self.last_ctrl_c = -10.0
        self.exit_code: int | None = None
        self.crashed = False
        self._signals = _Signals()
        self._byte_log_fd: int | None = None
        self._wake_w = -1  # the loop's wake-up pipe (a hook thread's answer lands there)
        self.session_rules: set[str] = set()  # tools allowed "for this session"

    # ----- plumbing -------------------------------------------------------------------------

    def _out(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", errors="replace"))
        while data:
            try:
                data = data[os.write(self.out_fd, data) :]
            except BlockingIOError:
                select.select([], [self.out_fd], [], 1.0)
            except OSError:
                return  # terminal gone: nothing to draw on

    def _draw(self) -> None:
        del self.model.history[:-HISTORY_KEEP]
        self.model.box = self.box.display
        self.model.queued = list(self.queue)
        rows, cols = terminal_size(self.out_fd)
        self._out(render(self.model, rows, cols))

    def _status(self, status: str) -> None:
        self.model.status = status
        self.session_file.write(self.session_id, status)

    def _hook_base(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "transcript_path": str(self.transcript.path),
            "cwd": self.cwd,
        }

    def _hook(self, event: str, **extra: Any) -> list[str]:
        return self.hooks.run(event, self._hook_base(), extra)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGWINCH:  # a resize only needs the wake-up and redraw
            self._signals.terminate = True

    # ----- turns ----------------------------------------------------------------------------

    def _submit(self) -> None:
        self.enters_swallowed = 0
        text = self.box.take()
        if not text.strip():
            return
        if self.turn is not None:
            self.queue.append(text)
            return
        if text.strip() == "/clear":
            self._clear()
            return
        self._start_turn(text, "typed")

    def _clear(self) -> None:
        """``/clear``: a new session id and transcript file, like Claude Code."""
        self._hook("SessionEnd", reason="clear")
        self.session_id = str(uuid.uuid4())
        self.transcript = TranscriptWriter(self.config, self.cwd, self.session_id)
        self.model.history = [f"✻ Fake agent (agentbridge) · session {self.session_id}"]
        self._status("idle")
        self._hook("SessionStart", source="clear", model=MODEL)

    def _start_turn(self, prompt: str, source: str) -> None:
        faults = parse_faults(prompt)
        if self.first_fault is not None:
            faults = faults.merge(self.first_fault)
            self.first_fault = None
        prompt_id = str(uuid.uuid4())
        now = time.monotonic()
        delay = faults.slow if faults.slow is not None else self.opts.reply_delay
        self.turn = Turn(prompt, prompt_id, faults, now, delay=delay)
        self.model.history.append(f"> {short(prompt)}")
        self._status("busy")
        self._draw()
        self._hook(
            "UserPromptSubmit", prompt=prompt, prompt_id=prompt_id, permission_mode="default"
        )
        self.transcript.user(prompt, prompt_id, source)
        if faults.crash:
            self.transcript.flush()
            self.crashed = True
            self.exit_code = CRASH_EXIT
            return
        if faults.hang:
            self.transcript.flush()
        elif faults.tool and TOOL in self.session_rules:
            self.turn.note = Decision(True, always=True).note() + " (session rule)"
            self.turn.deadline = time.monotonic() + delay
        elif faults.permission or faults.tool:
            self.transcript.flush()
            if faults.tool:  # the dialog shows while the hooks run; the first answer wins
                self.turn.ask = PermissionAsk(self.hooks, self._hook_base(), self._wake_w)
            self.turn.waiting = True
            self._status("waiting")
            self._hook(
                "Notification",
                notification_type="permission_prompt",
                message="Claude needs your permission to use Bash",
            )
        else:
            if delay > BATCH_WINDOW:
                self.transcript.flush()
            self.turn.deadline = time.monotonic() + delay
            count = progress_steps(prompt)
            self.turn.steps = [now + delay * i / (count + 1) for i in range(1, count + 1)]

    def _decided(self, turn: Turn, decision: Decision | None) -> None:
        """The hooks are done: their decision ends the dialog; none leaves it for a key."""
        turn.ask = None
        if decision is None or not turn.waiting:
            return
        turn.note = decision.note()
        if decision.always:
            self.session_rules.add(TOOL)
        self._approve()
        if not decision.allow:  # denied: the turn ends without the tool
            turn.deadline = time.monotonic()

    def _approve(self) -> None:
        """A key on the permission dialog: carry on with the turn."""
        assert self.turn is not None
        self.turn.waiting = False
        self.turn.deadline = time.monotonic() + self.turn.delay
        self._status("busy")

    def _finish_turn(self) -> None:
        turn = self.turn
        assert turn is not None
        duration_ms = int((time.monotonic() - turn.started) * 1000)
        if turn.faults.api_error is not None:
            error, text = api_error(turn.faults.api_error)
            self.transcript.api_error(text, error)
            self.transcript.flush()
            self.model.history.append(f"  ⎿  {text}")
            self._hook("StopFailure", error=error, error_details=text, last_assistant_message=text)
        else:
            reply = reply_text(turn.prompt)
            reply = f"{turn.note}\n{reply}" if turn.note else reply
            self.transcript.assistant(reply)
            commands = self._hook(
                "Stop",
                prompt_id=turn.prompt_id,
                stop_hook_active=False,
                last_assistant_message=reply,
            )
            if commands:
                self.transcript.stop_hook_summary(commands)
            self.transcript.turn_duration(duration_ms)
            self.transcript.flush()
            self.model.history.append(f"⏺ {reply}")
        self.turn = None
        self._next_or_idle()

    def _next_or_idle(self) -> None:
        if self.queue:
            self._start_turn(self.queue.pop(0), "queued")
        else:
            self._status("idle")

    def _interrupt(self) -> None:
        """Esc while busy: Claude's interrupt line (none with ``#fake:rewind``), no turn end or
        Stop hook, the prompt back in the box."""
        turn = self.turn
        assert turn is not None
        if not turn.faults.rewind:
            self.transcript.interrupted()
        self.transcript.flush()
        self.turn = None
        for text in reversed(self.queue):
            self.box.restore(text)
        self.queue = []
        self.box.restore(turn.prompt)
        self.model.history.append("  ⎿  Interrupted · What should Claude do instead?")
        self._status("idle")

    # ----- input ----------------------------------------------------------------------------

    def _take_paste(self, now: float) -> None:
        """The pending paste is taken in (drawn); keys read after it apply now, in order."""
        if self.pending_paste is None or now < self.pending_paste[1]:
            return
        text, _ = self.pending_paste
        self.pending_paste = None
        self.box.paste(text)
        deferred, self.deferred = self.deferred, []
        for event in deferred:
            self._handle(event, now)

    def _handle(self, event: KeyEvent, now: float) -> None:
        if self.pending_paste is not None:
            if event.kind is KeyKind.PASTE:  # a second paste: the first one is in by now
                self.pending_paste = (self.pending_paste[0], now)
                self._take_paste(now)
            elif event.kind is not KeyKind.ENTER:  # an Enter now is swallowed
                self.deferred.append(event)
                return
            else:
                return
        if self.turn is not None and self.turn.waiting and event.kind is not KeyKind.OTHER:
            self._approve()
            if event.kind is KeyKind.PASTE:
                self.box.paste(event.text)
            return
        kind = event.kind
        if kind is not KeyKind.CTRL_C:
            self.model.notice = ""
        if kind is KeyKind.TEXT:
            self.box.type(event.text)
        elif kind is KeyKind.PASTE:
            self.pending_paste = (event.text, now + self.opts.paste_delay)
        elif kind is KeyKind.ENTER:
            if self.enters_swallowed < swallowed_enters(self.box.text):
                self.enters_swallowed += 1  # a test's stand-in for a rare lost Enter
            else:
                self._submit()
        elif kind is KeyKind.BACKSPACE:
            self.box.backspace()
        elif kind is KeyKind.CLEAR_LINE:
            self.box.clear()
            self.enters_swallowed = 0
        elif kind is KeyKind.ESCAPE:
            if self.turn is not None:
                self._interrupt()
        elif kind is KeyKind.CTRL_C:
            self._ctrl_c(now)

    def _ctrl_c(self, now: float) -> None:
        if self.box.text:
            self.box.clear()
        elif self.turn is not None:
            self._interrupt()
        elif now - self.last_ctrl_c < DOUBLE_CTRL_C:
            self.exit_code = 0
        else:
            self.last_ctrl_c = now
            self.model.notice = "Press Ctrl-C again to exit"

    def _read(self) -> bool:
        """Read what the terminal has; False at end of input."""
        try:
            data = os.read(self.in_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        if self._byte_log_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._byte_log_fd, data)
        now = time.monotonic()
        for event in self.parser.feed(data):
            self._handle(event, now)
            if self.exit_code is not None:
                break
        return True

    # ----- main loop ------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        deadlines = [
            d
            for d in (
                self.parser.escape_deadline(),
                self.turn.deadline if self.turn is not None else None,
                self.turn.steps[0] if self.turn is not None and self.turn.steps else None,
                self.pending_paste[1] if self.pending_paste is not None else None,
            )
            if d is not None
        ]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _loop(self, wake_fd: int) -> None:
        while self.exit_code is None:
            try:
                ready, _, _ = select.select([self.in_fd, wake_fd], [], [], self._timeout())
            except InterruptedError:
                ready = []
            if wake_fd in ready:
                with contextlib.suppress(OSError):
                    os.read(wake_fd, 4096)
            if self._signals.terminate:
                self.exit_code = 0
                return
            if self.in_fd in ready and not self._read():
                self.exit_code = 0
                self._hook("SessionEnd", reason="other")
                return
            now = time.monotonic()
            for event in self.parser.expire(now):
                self._handle(event, now)
            self._take_paste(now)
            if self.exit_code is not None:
                return
            turn = self.turn
            if turn is not None and turn.ask is not None and turn.ask.done:
                self._decided(turn, turn.ask.decision)
            while turn is not None and turn.steps and now >= turn.steps[0] and not turn.waiting:
                turn.steps.pop(0)
                total = progress_steps(turn.prompt)
                self.transcript.assistant(f"step {total - len(turn.steps)}/{total}")
                self.transcript.flush()
            if turn is not None and turn.deadline is not None and now >= turn.deadline:
                self._finish_turn()
            if self.exit_code is None:
                self._draw()

    def run(self) -> int:
        """Run until exit; returns the process exit code."""
        if self.opts.byte_log is not None:
            self._byte_log_fd = os.open(
                self.opts.byte_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
        saved: list[Any] | None = None
        if os.isatty(self.in_fd):
            saved = termios.tcgetattr(self.in_fd)
            tty.setraw(self.in_fd)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        self._wake_w = wake_w
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handled = (signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)
        old_handlers = {s: signal.signal(s, self._on_signal) for s in handled}
        try:
            self._out(BRACKETED_PASTE_ON)
            self._status("idle")
            self._draw()
            self._hook("SessionStart", source="startup", model=MODEL)
            self._loop(wake_r)
        finally:
            self._out(BRACKETED_PASTE_OFF + "\r\n")
            if saved is not None:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(self.in_fd, termios.TCSAFLUSH, saved)
            if not self.crashed:
                self.session_file.remove()
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            os.close(wake_r)
            os.close(wake_w)
            if self._byte_log_fd is not None:
                os.close(self._byte_log_fd)
        return self.exit_code if self.exit_code is not None else 0
