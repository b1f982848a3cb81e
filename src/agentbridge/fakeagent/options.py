"""The fake agent's options and where it keeps its files (Claude Code's layout)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Options:
    """Command-line options."""

    session_id: str
    byte_log: Path | None = None
    reply_delay: float = 0.05
    #: seconds from reading a paste to drawing it; an Enter before that is swallowed
    paste_delay: float = 0.02
    #: ``--settings``: a settings file or JSON text whose hooks add to settings.json's
    settings: str | None = None


def config_dir() -> Path:
    """``$CLAUDE_CONFIG_DIR`` or ``~/.claude``, as Claude Code resolves it."""
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(env) if env else Path(os.environ.get("HOME", "/")) / ".claude"
