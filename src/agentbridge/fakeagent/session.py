"""The fake agent's session state (and the ``Turn`` it answers) and its plumbing: the screen,
the status file, hooks.

The base of ``FakeAgent`` (``app.py``): every attribute the turns (``turns.py``), the key
handling (``key_handling.py``) and the loop read lives here, set up in one place.
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass
from typing import Any

from agentbridge.fakeagent.hooks import HookRunner
from agentbridge.fakeagent.inputbox import InputBox
from agentbridge.fakeagent.keys import InputParser, KeyEvent
from agentbridge.fakeagent.options import Options, config_dir
from agentbridge.fakeagent.permission import PermissionAsk
from agentbridge.fakeagent.prompt import Faults, env_faults
from agentbridge.fakeagent.screen import ScreenModel, render, terminal_size
from agentbridge.fakeagent.session_file import SessionFile
from agentbridge.fakeagent.transcript_writer import TranscriptWriter

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
class Signals:
    terminate: bool = False


class AgentSession:
    """One interactive session on the terminal at ``in_fd``/``out_fd``: its state."""

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
        self._signals = Signals()
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
