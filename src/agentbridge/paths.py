"""Where agentbridge keeps its config, data and logs: the platformdirs locations of the user.

Everything derives from HOME / XDG variables at call time, so setting HOME isolates a run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP = "agentbridge"


def config_dir() -> Path:
    """Directory of ``config.toml``."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def data_dir() -> Path:
    """Directory of the ledger and per-agent state."""
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def log_dir() -> Path:
    """Directory of log files."""
    return Path(platformdirs.user_log_dir(APP, appauthor=False))


def default_config_path() -> Path:
    """``AGENTBRIDGE_CONFIG`` if set, else ``config.toml`` in the config dir."""
    env = os.environ.get("AGENTBRIDGE_CONFIG")
    return Path(env).expanduser() if env else config_dir() / "config.toml"


def agentbridge_argv(config: Path | None = None) -> list[str]:
    """How another process (an agent, a service manager) runs this same agentbridge: the
    virtualenv's script when there is one (its PATH may not hold our venv), else ``-m``."""
    exe = Path(sys.executable).with_name("agentbridge")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "agentbridge.cli"]
    return argv if config is None else [*argv, "--config", str(config)]


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing; state dirs hold secrets and transcripts."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
