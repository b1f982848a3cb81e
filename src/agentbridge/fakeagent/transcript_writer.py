"""Claude-format JSONL transcript, batched the way Claude Code flushes it.

Lines are queued and written by ``flush()`` in a single ``write`` call, so a fast turn's user line
and turn end land together — the batching a bridge must cope with.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERSION = "2.1.197-fake"
MODEL = "fake-model"


def project_dir_name(cwd: str) -> str:
    """Claude's project folder name, computed exactly as the real CLI does (every character
    that is not a letter or digit becomes ``-``; long paths get Claude's hash suffix)."""
    from agentbridge.runtimes.claude.profile import claude_project_dir_name

    return claude_project_dir_name(cwd)


def transcript_path(config_dir: Path, cwd: str, session_id: str) -> Path:
    """Where Claude Code would write this session's transcript."""
    return config_dir / "projects" / project_dir_name(cwd) / f"{session_id}.jsonl"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TranscriptWriter:
    """One session's transcript file; created at the first flush that has lines."""

    def __init__(self, config_dir: Path, cwd: str, session_id: str) -> None:
        self.session_id = session_id
        self.cwd = cwd
        self.path = transcript_path(config_dir, cwd, session_id)
        self._parent: str | None = None
        self._pending: list[dict[str, Any]] = []

    @property
    def has_pending(self) -> bool:
        """True if lines wait for the next flush."""
        return bool(self._pending)

    def _add(self, record: dict[str, Any]) -> dict[str, Any]:
        line_uuid = str(uuid.uuid4())
        full: dict[str, Any] = {
            "parentUuid": self._parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": VERSION,
            "gitBranch": "",
            **record,
            "uuid": line_uuid,
            "timestamp": _now(),
        }
        self._parent = line_uuid
        self._pending.append(full)
        return full

    def user(self, prompt: str, prompt_id: str, source: str) -> None:
        """The prompt as submitted (``source`` is ``typed`` or ``queued``)."""
        self._add(
            {
                "type": "user",
                "message": {"role": "user", "content": prompt},
                "promptSource": source,
                "promptId": prompt_id,
                "origin": {"kind": "human"},
            }
        )

    def assistant(self, text: str) -> None:
        """The model's final text block of the turn."""
        self._add(
            {
                "type": "assistant",
                "message": {
                    "id": f"msg_fake_{uuid.uuid4().hex[:20]}",
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": max(1, len(text) // 4)},
                },
                "requestId": f"req_fake_{uuid.uuid4().hex[:20]}",
            }
        )

    def api_error(self, text: str, error: str) -> None:
        """The synthetic assistant line Claude writes when the API call fails."""
        self._add(
            {
                "type": "assistant",
                "message": {
                    "id": str(uuid.uuid4()),
                    "type": "message",
                    "role": "assistant",
                    "model": "<synthetic>",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "stop_sequence",
                    "stop_sequence": "",
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
                "isApiErrorMessage": True,
                "error": error,
            }
        )

    def stop_hook_summary(self, commands: list[str]) -> None:
        """Written after the Stop hooks ran, before the turn end."""
        self._add(
            {
                "type": "system",
                "subtype": "stop_hook_summary",
                "hookCount": len(commands),
                "hookInfos": [{"command": c} for c in commands],
                "hookErrors": [],
                "preventedContinuation": False,
                "stopReason": "",
                "hasOutput": False,
                "level": "suggestion",
            }
        )

    def interrupted(self) -> None:
        """What Claude writes when Esc stops a turn (and no turn end)."""
        self._add(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [{"type": "text", "text": "[Request interrupted by user]"}],
                },
            }
        )

    def turn_duration(self, duration_ms: int) -> None:
        """The turn end marker."""
        self._add(
            {
                "type": "system",
                "subtype": "turn_duration",
                "durationMs": duration_ms,
                "isMeta": False,
            }
        )

    def flush(self) -> None:
        """Write every pending line with one ``write`` call (O_APPEND)."""
        if not self._pending:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self._pending).encode()
        self._pending = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
