"""Runtime profile for the built-in fake agent (``python -m agentbridge.fakeagent``).

Why it is the Claude profile: the fake agent is Claude-compatible by design (same config dir,
transcript path and format, sessions file, settings.json hooks, ``❯`` input box), so the demo
exercises exactly the code paths a real Claude Code agent uses, with no download and no model.
"""

from __future__ import annotations

import sys

from agentbridge.runtimes.claude_code import ClaudeCodeProfile

__all__ = ["DemoProfile"]


class DemoProfile(ClaudeCodeProfile):
    """The Claude profile run with ``[sys.executable, "-m", "agentbridge.fakeagent"]``."""

    name = "demo"
    default_command = (sys.executable, "-m", "agentbridge.fakeagent")
    #: the fake agent has no ``--resume``; the same ``--session-id`` appends to the same file
    resume_flag = False
