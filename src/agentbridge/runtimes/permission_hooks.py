"""The blocking ``PermissionRequest`` hook entry each CLI gets (``agent.permission_hook``).

Kept apart from the relay hooks (``common.merge_hooks``): this one answers, so it is never
``async``, and its ``timeout`` (seconds) is beyond any relay timeout — the supervisor answers
first, or the hook gives up on its own. The command holds the ``agentbridge.hook_relay``
marker, so ``common.remove_marked_hooks`` cleans it with the others.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

from agentbridge.agent.permission_hook import CLI_TIMEOUT
from agentbridge.runtimes.common import HOOK_MARK

EVENT = "PermissionRequest"


def permission_command(state_dir: Path, agent: str) -> str:
    """The shell command: this Python, the hook module, the agent's state dir and name."""
    parts = [sys.executable, "-m", "agentbridge.agent.permission_hook", str(state_dir), agent]
    return " ".join(shlex.quote(p) for p in parts) + f" # {HOOK_MARK}"


def with_claude_permission_hook(
    hooks: dict[str, Any], state_dir: Path, agent: str
) -> dict[str, Any]:
    """``hooks`` (Claude ``settings.json`` shape) plus our blocking ``PermissionRequest`` entry."""
    hook = {
        "type": "command",
        "command": permission_command(state_dir, agent),
        "timeout": CLI_TIMEOUT,
    }
    current = hooks.get(EVENT)
    return {**hooks, EVENT: [*(current if isinstance(current, list) else []), {"hooks": [hook]}]}


def codex_permission_override(state_dir: Path, agent: str) -> list[str]:
    """``-c hooks.PermissionRequest=[…]`` for Codex's session-flags layer."""
    command = permission_command(state_dir, agent)
    quoted = '"' + command.replace("\\", "\\\\").replace('"', '\\"') + '"'
    groups = f'[{{hooks=[{{type="command",command={quoted},timeout={CLI_TIMEOUT}}}]}}]'
    tomllib.loads(f"x = {groups}")  # refuse here what TOML cannot carry
    return ["-c", f"hooks.{EVENT}={groups}"]
