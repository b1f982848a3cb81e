"""What an agent CLI's error words mean when its runtime says nothing better: the default.

The dispatcher reads a turn's API error through ``error_text_of(profile)``: which fault the
error record's text names when no error screen could be read (the record came first), and how
long to wait for a reset time as the CLI printed it. Each runtime knows its own CLI's words
(``runtimes/claude/errors.py``, ``runtimes/codex/errors.py``); these are plain English ones
any CLI might print.
"""

from __future__ import annotations

import datetime as dt
import re

from agentbridge.plugin.protocols import ErrorText, ScreenKind

__all__ = ["GENERIC", "GenericErrorText", "error_text_of", "seconds_until_clock"]

_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?\s*([ap]m)", re.IGNORECASE)
_RESETS = re.compile(r"resets?\s+(?:at\s+)?([0-9:]+\s*[ap]m[^\n]*)", re.IGNORECASE)


#: how late after its printed time we may read a reset and still take it as due
_SLACK = dt.timedelta(minutes=5)


def seconds_until_clock(reset_at: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds until a printed clock time ("3:45pm", "3 PM"; local time); None when the text
    holds no time we can read.

    A time just past is "now", not tomorrow: the CLI prints it to the minute and we read it a
    little later (a slow machine, a screen read twice), so a time up to a minute plus a few
    minutes of slack ago is due; only one further back means tomorrow.
    """
    match = _CLOCK.search(reset_at or "")
    if match is None:
        return None
    hour = int(match[1]) % 12 + (12 if match[3].lower() == "pm" else 0)
    minute = int(match[2] or 0)
    now = now or dt.datetime.now()
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now - dt.timedelta(minutes=1) - _SLACK:
        target += dt.timedelta(days=1)
    return max(0.0, (target - now).total_seconds())


class GenericErrorText:
    """Plain words: a "rate limit", a limit that "resets" at a clock time, a context that is
    full or too long; anything else is a plain API error."""

    def classify(self, text: str) -> tuple[ScreenKind, str | None]:
        """The fault an API error's text names, and the reset time it prints (or None)."""
        lowered = text.lower()
        if (
            "rate_limit" in lowered
            or "rate limit" in lowered
            or ("limit" in lowered and "reset" in lowered)
        ):
            match = _RESETS.search(text)
            return ScreenKind.RATE_LIMITED, match.group(1) if match else None
        if "context" in lowered and any(w in lowered for w in ("limit", "full", "too long")):
            return ScreenKind.CONTEXT_FULL, None
        return ScreenKind.API_ERROR, None

    def seconds_until_reset(
        self, reset_at: str | None, now: dt.datetime | None = None
    ) -> float | None:
        """Seconds until ``reset_at`` (a clock time); None when unreadable."""
        return seconds_until_clock(reset_at, now)


#: the default for a profile without ``error_text``
GENERIC = GenericErrorText()


def error_text_of(profile: object) -> ErrorText:
    """The profile's ``error_text``, or the generic default (profiles written before it)."""
    found: ErrorText | None = getattr(profile, "error_text", None)
    return GENERIC if found is None else found
