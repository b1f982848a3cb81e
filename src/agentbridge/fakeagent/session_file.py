"""``<config>/sessions/<pid>.json``: the status file Claude Code keeps while it runs."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path


class SessionFile:
    """Atomically rewritten (tmp + rename) on every status change; removed on a clean exit."""

    def __init__(self, config_dir: Path, cwd: str) -> None:
        self.pid = os.getpid()
        self.path = config_dir / "sessions" / f"{self.pid}.json"
        self.cwd = cwd
        self.started_at = int(time.time() * 1000)

    def write(self, session_id: str, status: str) -> None:
        """Record ``status`` (idle|busy|waiting) for ``session_id``."""
        record = {
            "pid": self.pid,
            "sessionId": session_id,
            "cwd": self.cwd,
            "status": status,
            "startedAt": self.started_at,
            "updatedAt": int(time.time() * 1000),
            "kind": "interactive",
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Delete the file (clean exit)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
