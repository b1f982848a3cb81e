"""Claude-style hooks: commands from ``<config>/settings.json`` fed a JSON payload on stdin."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 60.0


class HookRunner:
    """Runs the configured hook commands for one event, synchronously, as Claude Code does."""

    def __init__(self, config_dir: Path, cwd: str) -> None:
        self.settings_path = config_dir / "settings.json"
        self.cwd = cwd

    def _commands(self, event: str) -> list[tuple[str, float]]:
        """Hook commands for ``event``; settings are re-read so edits apply without restart."""
        try:
            settings = json.loads(self.settings_path.read_text(encoding="utf-8"))
            groups = settings.get("hooks", {}).get(event, [])
            found: list[tuple[str, float]] = []
            for group in groups:
                for hook in group.get("hooks", []):
                    if hook.get("type", "command") == "command" and hook.get("command"):
                        found.append((str(hook["command"]), float(hook.get("timeout", 60))))
            return found
        except (OSError, ValueError, AttributeError, TypeError):
            return []

    def run(self, event: str, base: dict[str, Any], extra: dict[str, Any]) -> list[str]:
        """Run every hook for ``event``; return the commands that ran (failures are ignored)."""
        commands = self._commands(event)
        if not commands:
            return []
        payload = json.dumps({**base, "hook_event_name": event, **extra}).encode()
        for command, timeout in commands:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["sh", "-c", command],
                    input=payload,
                    cwd=self.cwd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                )
        return [c for c, _ in commands]
