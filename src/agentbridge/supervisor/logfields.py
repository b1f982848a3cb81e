"""The message id as a structured field of log records (``record.message_id``).

Why: a message's story is spread over the dispatcher, the agent session and the relay; with
its id as a field, the log file can be filtered by message (``grep message_id=42``, or a log
shipper's field) instead of by matching prose. Records get it from ``extra={"message_id":
…}``, from a ``for_message`` adapter, or from the house style ``"message %s: …"`` (the
first argument), so existing log calls need no change.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["MessageIdFilter", "WithFields", "for_message"]


class MessageIdFilter(logging.Filter):
    """Sets ``record.message_id`` (None when the record is about no message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "message_id", None) is None:
            record.message_id = _from_text(record)
        return True


def _from_text(record: logging.LogRecord) -> int | None:
    msg = record.msg
    if not isinstance(msg, str) or not msg.startswith(("message %s", "message %d")):
        return None
    args = record.args
    first = args[0] if isinstance(args, tuple) and args else None
    if isinstance(first, int) and not isinstance(first, bool):
        return first
    return None


class WithFields(logging.Formatter):
    """The usual line, then `` message_id=N`` when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ident = getattr(record, "message_id", None)
        if ident is None:
            return line
        head, sep, rest = line.partition("\n")  # before a traceback, if any
        return f"{head} message_id={ident}{sep}{rest}"


class _MessageAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def for_message(logger: logging.Logger, message_id: int) -> logging.LoggerAdapter[logging.Logger]:
    """``logger`` whose records carry ``message_id`` (for lines not in the house style)."""
    return _MessageAdapter(logger, {"message_id": message_id})
