"""Logging of ``agentbridge up``: everything (tracebacks too) to a rotating file, one line per
record on the terminal, so a refusal reads as one line there and its details are in the file.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import Any

from agentbridge import paths
from agentbridge.supervisor.logfields import MessageIdFilter, WithFields

__all__ = ["FILE_ONLY", "setup_logging"]

#: ``log.error(..., extra=FILE_ONLY)``: the record goes to the log file, not the terminal
FILE_ONLY: dict[str, Any] = {"file_only": True}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OneLine(logging.Formatter):
    """The message without its traceback (the file handler keeps it)."""

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return super().format(bare)


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


def setup_logging(verbose: bool = False) -> Path:
    """INFO to stderr (one line each) and everything to a file under the platform log dir."""
    log_dir = paths.ensure_private_dir(paths.log_dir())
    path = log_dir / "agentbridge.log"
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for terminal in root.handlers:  # the CLI's stderr handler (logging.basicConfig)
        if type(terminal) is logging.StreamHandler:
            terminal.setFormatter(_OneLine(_FORMAT))
            terminal.addFilter(_not_file_only)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    handler.setFormatter(WithFields(_FORMAT))  # `` message_id=N`` on a message's lines
    handler.addFilter(MessageIdFilter())
    root.addHandler(handler)
    for noisy in ("aiosqlite", "watchdog", "libtmux", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
