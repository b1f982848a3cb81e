"""Claude Code's words for its faults: the text of its API-error records (a transcript's
``API Error: …`` item, a ``StopFailure`` hook's ``error``) and its reset times.

Taken from the real CLI's answers to the mock model server's 429/529/400 (the same words its
screens show, see ``claude_screen_state``): "API Error: Request rejected (429)",
"rate_limit_error", "You've hit your limit · resets 3:45pm (UTC)", "Prompt is too long",
"Context limit reached".
"""

from __future__ import annotations

import re

from agentbridge.plugin.protocols import ScreenKind
from agentbridge.runtimes.errors import GenericErrorText

__all__ = ["CLAUDE_ERRORS", "ClaudeErrorText"]

_RATE = re.compile(
    r"API Error: (?:Request rejected \(429\)|429\b)|rate_limit|\blimit\b.*\bresets?\b",
    re.IGNORECASE | re.DOTALL,
)
#: "resets 3:45pm (UTC)", "resets at 3pm · /upgrade": the time alone
_RESETS = re.compile(r"\bresets?\s+(?:at\s+)?(?P<when>[^·\n()]+?)\s*(?:[·(\n]|$)", re.IGNORECASE)
_CONTEXT = re.compile(r"Context limit reached|Prompt is too long|context window", re.IGNORECASE)


class ClaudeErrorText(GenericErrorText):
    """Claude Code's error words first, then the plain ones."""

    def classify(self, text: str) -> tuple[ScreenKind, str | None]:
        """Rate limit (with its reset time), context full, else what the plain words say."""
        if _RATE.search(text):
            match = _RESETS.search(text)
            return ScreenKind.RATE_LIMITED, match["when"].strip() if match else None
        if _CONTEXT.search(text):
            return ScreenKind.CONTEXT_FULL, None
        return super().classify(text)


CLAUDE_ERRORS = ClaudeErrorText()
