"""Codex's words for its faults: the ``error`` messages of its rollout and its reset times.

The same words its screens show (see ``codex_screen_state``): "You've hit your usage limit …
try again at 3:45 PM" or "… try again in 2 hours 5 minutes", "429 Too Many Requests",
"ran out of room in the model's context window", "context_length_exceeded".
"""

from __future__ import annotations

import datetime as dt
import re

from agentbridge.plugin.protocols import ScreenKind
from agentbridge.runtimes.errors import GenericErrorText, seconds_until_clock

__all__ = ["CODEX_ERRORS", "CodexErrorText"]

_USAGE = re.compile(r"usage limit.*?try again (?:at|in) (?P<when>[^.\n]+)", re.IGNORECASE)
_RATE = re.compile(r"\b429\b|Too Many Requests|rate limit", re.IGNORECASE)
_CONTEXT = re.compile(r"context window|context_length|ran out of room", re.IGNORECASE)
_SPAN = re.compile(r"(\d+)\s*(second|minute|hour|day)s?\b", re.IGNORECASE)
_UNIT = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class CodexErrorText(GenericErrorText):
    """Codex's error words first, then the plain ones."""

    def classify(self, text: str) -> tuple[ScreenKind, str | None]:
        """Usage limit (with its reset), rate limit, context full, else the plain words."""
        if match := _USAGE.search(text):
            return ScreenKind.RATE_LIMITED, match["when"].strip()
        if _RATE.search(text):
            return ScreenKind.RATE_LIMITED, None
        if _CONTEXT.search(text):
            return ScreenKind.CONTEXT_FULL, None
        return super().classify(text)

    def seconds_until_reset(
        self, reset_at: str | None, now: dt.datetime | None = None
    ) -> float | None:
        """A span ("2 hours 5 minutes") or a clock time ("3:45 PM"); None when unreadable."""
        spans = _SPAN.findall(reset_at or "")
        if spans:
            return float(sum(int(n) * _UNIT[unit.lower()] for n, unit in spans))
        return seconds_until_clock(reset_at, now)


CODEX_ERRORS = CodexErrorText()
