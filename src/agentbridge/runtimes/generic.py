"""Runtime profile for any other terminal program: a command and a ``ready_pattern`` regex.

Why it is weaker (``strong_completion = False``): a generic program keeps no transcript and runs
no hooks, so the bridge never sees the program's own record of a prompt or of a turn's end. All
it has is the screen: "ready" means the ``ready_pattern`` matches the last lines of the pane.
A reply read off the screen may be cut, wrapped or mixed with the program's own output, and a
program that redraws its prompt mid-work can look ready too early. Use a real profile when one
exists.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from agentbridge.config import AgentConfig
from agentbridge.events import AgentEvent, TranscriptParser
from agentbridge.plugin.protocols import HookParser, LaunchSpec, ScreenKind, ScreenState
from agentbridge.runtimes import common
from agentbridge.runtimes.errors import GENERIC

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
    """Screen-based evidence only; one instance serves every agent.

    Each agent's ``ready_pattern`` travels in its :class:`LaunchSpec`; ``screen_state`` honours
    the spec it is given. Called without one (a caller that has no spec), it falls back to the
    patterns of every agent prepared so far: READY when any of them matches (with one generic
    agent, or several sharing a pattern, that is exact).
    """

    name = "generic"
    strong_completion = False
    #: one line only (a pane without bracketed paste); multi-line text always goes to a file
    paste_limit = 2000
    error_text = GENERIC

    def __init__(self, ready_pattern: str | None = None) -> None:
        self.default_pattern = ready_pattern or DEFAULT_READY
        _compiled(self.default_pattern)
        self._patterns: dict[str, str] = {}  # agent name → its pattern, for the no-spec fallback

    def prepare(self, agent: AgentConfig, state_dir: Path, resume: bool) -> LaunchSpec:
        """The configured command, in a clean whitelisted env; nothing is seeded."""
        if not agent.command:
            raise ValueError(f"agent {agent.name!r}: the generic runtime needs a command")
        pattern = agent.ready_pattern or self.default_pattern
        try:
            _compiled(pattern)
        except re.error as exc:
            raise ValueError(f"agent {agent.name!r}: bad ready_pattern {pattern!r}: {exc}") from exc
        self._patterns[agent.name] = pattern
        state_dir.mkdir(parents=True, exist_ok=True)
        cwd = common.resolve_cwd(agent, state_dir)
        env = common.clean_env(agent, {})
        return LaunchSpec(list(agent.command), env, cwd, ready_pattern=pattern)

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

    def screen_state(self, screen: str, spec: LaunchSpec | None = None) -> ScreenState:
        """READY when the agent's ``ready_pattern`` matches the last non-blank lines, else BUSY.

        The pattern is ``spec.ready_pattern`` when a spec is given, else see the class doc.
        ``capture-pane`` drops trailing spaces, so a pattern written for the prompt as the
        program prints it (``calc> $``) is also tried with the space put back.
        """
        screen = common.strip_ansi(screen)
        lines = [ln for ln in screen.rstrip("\n").split("\n") if ln.strip()]
        if not lines:
            return ScreenState(ScreenKind.STARTING)
        tail = "\n".join(lines[-3:])
        if spec is not None and spec.ready_pattern:
            patterns = [spec.ready_pattern]
        else:
            patterns = list(dict.fromkeys(self._patterns.values())) or [self.default_pattern]
        for pattern in patterns:
            regex = _compiled(pattern)
            if regex.search(tail) or regex.search(tail + " "):
                return ScreenState(ScreenKind.READY, None, "ready_pattern matched")
        return ScreenState(ScreenKind.BUSY)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)
