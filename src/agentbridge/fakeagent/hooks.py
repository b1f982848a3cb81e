"""Claude-style hooks: commands from ``<config>/settings.json`` and ``--settings``, fed a JSON
payload on stdin.

As measured on Claude Code 2.1.197: hooks of the ``--settings`` file (or JSON text) are merged
with those of ``settings.json`` (both run), and an identical command given in both runs once.
A hook marked ``"async": true`` runs in the background: the agent does not wait for it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 60.0


def _load(source: Path | str) -> Any:
    """A settings object from a file (re-read on each call) or a JSON text."""
    if isinstance(source, Path):
        return json.loads(source.read_text(encoding="utf-8"))
    return json.loads(source)


class HookRunner:
    """Runs the configured hook commands for one event, synchronously, as Claude Code does."""

    def __init__(self, config_dir: Path, cwd: str, extra_settings: str | None = None) -> None:
        self.settings_path = config_dir / "settings.json"
        self.cwd = cwd
        self.sources: list[Path | str] = [self.settings_path]
        if extra_settings:  # ``--settings``: a JSON text, or a file relative to the cwd
            text = extra_settings.lstrip()
            self.sources.append(
                extra_settings if text.startswith("{") else Path(cwd) / extra_settings
            )

    def _commands(self, event: str) -> list[tuple[str, float, bool]]:
        """Hook commands for ``event`` from every source, identical commands once; settings
        are re-read so edits apply without restart. A broken source contributes nothing."""
        found: list[tuple[str, float, bool]] = []
        seen: set[str] = set()
        for source in self.sources:
            try:
                groups = _load(source).get("hooks", {}).get(event, [])
                for group in groups:
                    for hook in group.get("hooks", []):
                        command = hook.get("command")
                        if hook.get("type", "command") != "command" or not command:
                            continue
                        if str(command) not in seen:
                            seen.add(str(command))
                            timeout = float(hook.get("timeout", 60))
                            found.append((str(command), timeout, hook.get("async") is True))
            except (OSError, ValueError, AttributeError, TypeError):
                continue
        return found

    def run(self, event: str, base: dict[str, Any], extra: dict[str, Any]) -> list[str]:
        """Run every hook for ``event``; return the commands that ran (failures are ignored)."""
        commands = self._commands(event)
        if not commands:
            return []
        payload = json.dumps({**base, "hook_event_name": event, **extra}).encode()
        for command, timeout, background in commands:
            if background:
                threading.Thread(
                    target=self._run_one, args=(command, payload, timeout), daemon=True
                ).start()
            else:
                self._run_one(command, payload, timeout)
        return [c for c, _, _ in commands]

    def outputs(self, event: str, base: dict[str, Any]) -> list[str]:
        """Run the (blocking) hooks for ``event`` one by one; their stdouts, for hooks that
        answer (``PermissionRequest``). A hook that fails or times out answers nothing."""
        payload = json.dumps({**base, "hook_event_name": event}).encode()
        found: list[str] = []
        for command, timeout, _ in self._commands(event):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = subprocess.run(
                    ["sh", "-c", command],
                    input=payload,
                    cwd=self.cwd,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                found.append(done.stdout.decode("utf-8", "replace"))
        return found

    def _run_one(self, command: str, payload: bytes, timeout: float) -> None:
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
