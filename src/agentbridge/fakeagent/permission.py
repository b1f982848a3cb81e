"""``#fake:tool``: a tool call that needs permission, decided by ``PermissionRequest`` hooks.

As Claude Code 2.1.197 does: the hooks get the tool call on stdin while the permission dialog
is on screen, and whichever answers first decides — a hook's
``hookSpecificOutput.decision`` (``allow``/``deny``) or a key on the dialog. A hook that
prints no decision leaves the dialog. The hooks run on a thread, so the agent keeps drawing
and reading keys meanwhile; a byte on ``wake_fd`` tells its loop the answer is in.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from agentbridge.fakeagent.hooks import HookRunner

EVENT = "PermissionRequest"
TOOL = "Bash"
#: what the fake tool would run: shown in the chat's question, never run
COMMAND = "touch fake-tool-output.txt"


@dataclass(frozen=True)
class Decision:
    """A hook's answer for the tool call."""

    allow: bool
    message: str = ""
    always: bool = False  #: ``updatedPermissions`` given: no more asking this session

    def note(self) -> str:
        """The line the reply starts with (a test reads the outcome there)."""
        if not self.allow:
            return f"tool {TOOL}: denied ({self.message or 'no reason'})"
        return f"tool {TOOL}: allowed" + (" for this session" if self.always else "")


def payload() -> dict[str, Any]:
    """The tool call's fields of the hook payload, shaped as Claude sends them."""
    rule = {"toolName": TOOL, "ruleContent": COMMAND}
    return {
        "permission_mode": "default",
        "tool_name": TOOL,
        "tool_input": {"command": COMMAND, "description": "make a file"},
        "permission_suggestions": [
            {"type": "addRules", "rules": [rule], "behavior": "allow", "destination": "session"}
        ],
    }


def parse_decision(stdout: str) -> Decision | None:
    """A ``PermissionRequest`` decision in a hook's stdout; None for anything else."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        output = json.loads(stdout)
        decision = output["hookSpecificOutput"]["decision"]
        behavior = decision.get("behavior")
        if behavior in ("allow", "deny"):
            return Decision(
                allow=behavior == "allow",
                message=str(decision.get("message") or ""),
                always=bool(decision.get("updatedPermissions")),
            )
    return None


class PermissionAsk:
    """The hooks of one tool call, running; ``decision`` once done (None: no hook decided)."""

    def __init__(self, hooks: HookRunner, base: dict[str, Any], wake_fd: int) -> None:
        self.done = False
        self.decision: Decision | None = None
        self._thread = threading.Thread(
            target=self._run, args=(hooks, {**base, **payload()}, wake_fd), daemon=True
        )
        self._thread.start()

    def _run(self, hooks: HookRunner, base: dict[str, Any], wake_fd: int) -> None:
        for out in hooks.outputs(EVENT, base):
            self.decision = parse_decision(out)
            if self.decision is not None:
                break
        self.done = True
        with contextlib.suppress(OSError):
            os.write(wake_fd, b"p")
