"""The default command of each runtime, when ``[agents.X] command`` is not set."""

from __future__ import annotations

import sys


def default_command(runtime: str) -> list[str]:
    """The CLI a runtime runs by default (looked up on PATH at launch)."""
    if runtime == "claude-code":
        return ["claude"]
    if runtime == "codex":
        return ["codex"]
    if runtime == "demo":
        return [sys.executable, "-m", "agentbridge.fakeagent"]
    return []
