"""Unit files that run ``agentbridge up`` as a user service (systemd on Linux, launchd on macOS).

``up`` already behaves as a service wants: foreground, logs to stderr and a rotating file,
graceful stop on SIGTERM, non-zero exit on a startup error (so the manager restarts it).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from agentbridge import paths


def _command(config: Path | None) -> list[str]:
    return [*paths.agentbridge_argv(config), "up"]


def systemd_unit(config: Path | None) -> str:
    """A ``systemd --user`` unit (``~/.config/systemd/user/agentbridge.cli.service``)."""
    return f"""[Unit]
Description=agentbridge: durable bridge between chat channels and AI coding agents
After=network-online.target

[Service]
ExecStart={shlex.join(_command(config))}
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30

[Install]
WantedBy=default.target
"""


def launchd_plist(config: Path | None) -> str:
    """A launchd agent (``~/Library/LaunchAgents/dev.agentbridge.plist``)."""
    args = "\n".join(f"    <string>{a}</string>" for a in _command(config))
    log = paths.log_dir() / "launchd.log"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>dev.agentbridge</string>
  <key>ProgramArguments</key>
  <array>
{args}
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>
  <key>StandardErrorPath</key><string>{log}</string>
</dict>
</plist>
"""
