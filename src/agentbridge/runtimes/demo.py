"""Runtime profile for the built-in fake agent (``python -m agentbridge.fakeagent``).

Why it is the Claude profile: the fake agent is Claude-compatible by design (same config dir,
transcript path and format, sessions file, hooks from settings.json merged with ``--settings``,
``❯`` input box), so the demo exercises exactly the code paths a real Claude Code agent uses,
with no download and no model.

Unlike a real Claude agent, a demo agent never touches the user's own ``~/.claude``: its config
dir defaults to its own state dir, so several demo agents (and a real Claude Code install)
never share hooks, sessions or transcripts.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from agentbridge.config import AgentConfig
from agentbridge.plugin.protocols import LaunchSpec
from agentbridge.runtimes.claude.profile import ClaudeCodeProfile

__all__ = ["DemoProfile"]


class DemoProfile(ClaudeCodeProfile):
    """The Claude profile run with ``[sys.executable, "-m", "agentbridge.fakeagent"]``."""

    name = "demo"
    default_command = (sys.executable, "-m", "agentbridge.fakeagent")
    #: the fake agent has no ``--resume``; the same ``--session-id`` appends to the same file
    resume_flag = False

    def prepare(self, agent: AgentConfig, state_dir: Path, resume: bool) -> LaunchSpec:
        """As Claude, with ``CLAUDE_CONFIG_DIR`` inside the agent's state dir by default."""
        if "CLAUDE_CONFIG_DIR" not in agent.env:
            env = {**agent.env, "CLAUDE_CONFIG_DIR": str(state_dir / "claude-config")}
            agent = dataclasses.replace(agent, env=env)
        return super().prepare(agent, state_dir, resume)
