"""Runtime profile for any other terminal program: a command and a ``ready_pattern`` regex.

Why it is weaker (``strong_completion = False``): a generic program keeps no transcript and runs
no hooks, so the bridge never sees the program's own record of a prompt or of a turn's end. All
it has is the screen: "ready" means the ``ready_pattern`` matches the last lines of the pane.
A reply read off the screen may be cut, wrapped or mixed with the program's own output, and a
program that redraws its prompt mid-work can look ready too early. Use a real profile when one
exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from agentbridge.agent_events import AgentEvent, TranscriptParser
from agentbridge.config import AgentConfig
from agentbridge.protocols import HookParser, LaunchSpec, ScreenKind, ScreenState
from agentbridge.runtimes import common

__all__ = ["GenericProfile", "NullParser"]

DEFAULT_READY = r"[$#>❯›]\s*$"


class NullParser:
    """A parser for "no transcript": never yields events."""

    corrupt_lines = 0

    def feed(self, line: str) -> list[AgentEvent]:
        """Nothing to read."""
        return []

    def reset(self) -> None:
        """Nothing to forget."""


class GenericProfile:
    """Screen-based evidence only; one instance serves every agent."""

    name = "generic"
    strong_completion = False

    # Caveat: ``screen_state`` gets no agent, so the pattern of the last ``prepare`` is used;
    # run one GenericProfile instance per generic agent when their patterns differ.
    def __init__(self, ready_pattern: str | None = None) -> None:
        self.ready = re.compile(ready_pattern or DEFAULT_READY, re.MULTILINE)

    def prepare(self, agent: AgentConfig, state_dir: Path, resume: bool) -> LaunchSpec:
        """The configured command, in a clean whitelisted env; nothing is seeded."""
        if not agent.command:
            raise ValueError(f"agent {agent.name!r}: the generic runtime needs a command")
        if agent.ready_pattern:
            self.ready = re.compile(agent.ready_pattern, re.MULTILINE)
        state_dir.mkdir(parents=True, exist_ok=True)
        cwd = common.resolve_cwd(agent, state_dir)
        return LaunchSpec(list(agent.command), common.clean_env(agent, {}), cwd, None, None, None)

    def transcript_path(self, spec: LaunchSpec, pane_pid: int | None) -> Path | None:
        """No transcript."""
        return None

    def new_parser(self) -> TranscriptParser:
        """A parser that never yields events."""
        return NullParser()

    def new_hook_parser(self) -> HookParser | None:
        """No hooks."""
        return None

    def agent_status(self, spec: LaunchSpec, pane_pid: int | None) -> str | None:
        """Unknown."""
        return None

    def screen_state(self, screen: str) -> ScreenState:
        """READY when ``ready_pattern`` matches the last non-blank lines, else BUSY."""
        lines = [ln for ln in screen.rstrip("\n").split("\n") if ln.strip()]
        tail = "\n".join(lines[-3:])
        if lines and self.ready.search(tail):
            return ScreenState(ScreenKind.READY, None, "ready_pattern matched")
        return ScreenState(ScreenKind.BUSY if lines else ScreenKind.STARTING)
