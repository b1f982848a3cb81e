"""The fake agent's keys: each parsed key applied to the input box, the dialog or the turn,
with Claude Code's paste intake (an Enter before a paste is drawn is swallowed)."""

from __future__ import annotations

import contextlib
import os
import time

from agentbridge.fakeagent.keys import KeyEvent, KeyKind
from agentbridge.fakeagent.prompt import swallowed_enters
from agentbridge.fakeagent.turns import Turns

DOUBLE_CTRL_C = 1.5


class KeyHandling(Turns):
    """Input from the terminal, key by key."""

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
