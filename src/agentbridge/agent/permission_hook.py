"""``python -m agentbridge.agent.permission_hook STATE_DIR AGENT``: a blocking ``PermissionRequest``
hook that asks the supervisor and prints the chat's decision for the CLI.

Claude Code 2.1.197 and Codex 0.169.0 both run ``PermissionRequest`` hooks with the payload on
stdin (``tool_name``, ``tool_input``; Claude adds ``permission_suggestions``) and read
``{"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior":
"allow"|"deny", ...}}}`` from stdout. Claude shows its own dialog while the hook runs and takes
whichever answers first; Codex waits for the hook, then shows its prompt if no decision came.

It must never hang the agent: no supervisor (no socket, refused, closed mid-wait, no ack within
``ACK_SECONDS``) or a wait past ``MAX_WAIT`` → exit 0 with nothing on stdout,
so the CLI's own prompt stays in the pane; a line in ``STATE_DIR/permission-hook.log`` says so.
Stdlib only (and ``agent/socket_pointer.py``, stdlib too): ``agentbridge.agent`` has an empty
``__init__``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from agentbridge.agent.socket_pointer import bridge_socket

ACK_SECONDS = 5.0  #: connecting and sending
#: the longest wait for an answer: the relay's timeout is capped at a day (config.py)
MAX_WAIT = 86400 + 60
LOG_NAME = "permission-hook.log"
MAX_STDIN = 4 * 1024 * 1024
#: how long the CLI lets the hook run (its ``timeout`` in seconds): beyond any relay timeout
CLI_TIMEOUT = 86400 + 120


def decision_output(answer: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any] | None:
    """The hook's stdout for the supervisor's ``answer``; None leaves the CLI's prompt."""
    behavior = answer.get("decision")
    if behavior not in ("allow", "deny"):
        return None
    decision: dict[str, Any] = {"behavior": behavior}
    if behavior == "deny":
        decision["message"] = str(answer.get("message") or "denied from the chat")
    elif answer.get("always"):
        rules = payload.get("permission_suggestions")
        if isinstance(rules, list) and rules:  # Claude: the rules its own "don't ask again" adds
            decision["updatedPermissions"] = [
                {**r, "destination": "session"} for r in rules if isinstance(r, dict)
            ]
    return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}


def ask(path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send the request and wait for the one answer line (the supervisor always answers by
    its own timeout, and its death closes the socket); None on any failure."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ACK_SECONDS)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.settimeout(MAX_WAIT)
        answer = json.loads(sock.makefile("rb").readline() or b"null")
        return answer if isinstance(answer, dict) else None


def _log(state_dir: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(state_dir / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        return 0
    state_dir, agent = Path(args[0]), args[1]
    try:
        raw = sys.stdin.buffer.read(MAX_STDIN)
        payload = json.loads(raw.decode("utf-8", "replace") or "{}")
        if not isinstance(payload, dict):
            return 0
        path = bridge_socket(state_dir.parent.parent)
        event = {k: payload.get(k) for k in ("tool_name", "tool_input", "session_id", "turn_id")}
        event["can_always"] = bool(payload.get("permission_suggestions"))
        answer = ask(path, {"cmd": "permission", "agent": agent, "event": event})
        output = decision_output(answer or {}, payload)
        if output is None:
            why = (answer or {}).get("error") or (answer or {}).get("note") or "no decision"
            _log(state_dir, f"{payload.get('tool_name')}: {why}; the CLI's own prompt stays")
            return 0
        sys.stdout.write(json.dumps(output) + "\n")
        _log(state_dir, f"{payload.get('tool_name')}: {answer}")
    except Exception as exc:  # no supervisor, a timeout: the pane prompt stays
        _log(state_dir, f"no answer from the supervisor ({exc!r}); the CLI's own prompt stays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
