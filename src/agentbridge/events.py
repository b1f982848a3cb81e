"""Normalized events produced by transcript parsers and hooks, whatever the agent CLI.

The host treats transcript, hook and screen evidence alike: the first event wins and duplicates
are no-ops in the ledger, so every source speaks this one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from agentbridge.envelope import Envelope

__all__ = ["AgentEvent", "AgentEventKind", "TranscriptParser"]


class AgentEventKind(StrEnum):
    """What happened in the agent session."""

    #: the agent's own record shows the prompt → accept
    PROMPT_RECORDED = "prompt_recorded"
    #: assistant text (progress)
    ASSISTANT_TEXT = "assistant_text"
    #: the turn ended; ``text`` = final answer → complete
    TURN_COMPLETED = "turn_completed"
    #: interrupted (Esc) – no completion
    TURN_ABORTED = "turn_aborted"
    #: the turn ended in an API error (rate limit, 5xx…)
    API_ERROR = "api_error"
    #: any other line of the agent's own (tool use etc.)
    PROGRESS = "progress"


@dataclass(frozen=True)
class AgentEvent:
    """One normalized event; ``envelope`` is None for a turn the bridge did not inject."""

    kind: AgentEventKind
    envelope: Envelope | None
    text: str = ""
    source: str = "transcript"  # "transcript" | "hook" | "screen"
    session_id: str | None = None
    #: the CLI's own id of the prompt (Claude's ``promptId``), on ``PROMPT_RECORDED`` when known:
    #: how a hook parser whose turn ends name the prompt only by id finds the envelope
    prompt_id: str | None = None


class TranscriptParser(Protocol):
    """A stateful per-file line parser; one instance per transcript file."""

    corrupt_lines: int

    def feed(self, line: str) -> list[AgentEvent]:
        """Parse one complete line; a corrupt line is counted and logged, never raised."""
        ...

    def reset(self) -> None:
        """Forget per-file state (the session switched to another file)."""
        ...
