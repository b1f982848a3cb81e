"""The fake agent's event loop: select on the terminal and a wake-up pipe, deadlines, signals;
the state is ``session.py``, turns ``turns.py``, keys ``key_handling.py``."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
import time
import tty
from types import FrameType
from typing import Any

from agentbridge.fakeagent.key_handling import KeyHandling
from agentbridge.fakeagent.screen import BRACKETED_PASTE_OFF, BRACKETED_PASTE_ON
from agentbridge.fakeagent.transcript_writer import MODEL

__all__ = ["FakeAgent"]


class FakeAgent(KeyHandling):
    """One interactive session on the terminal at ``in_fd``/``out_fd``."""

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGWINCH:  # a resize only needs the wake-up and redraw
            self._signals.terminate = True

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
            if turn is not None:
                self._progress(turn, now)
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
