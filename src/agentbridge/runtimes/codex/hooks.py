"""Codex's relay hooks and their parser: a ``Stop`` names its turn by ``turn_id``.

Why no ``UserPromptSubmit`` hook (as for Claude, see ``runtimes/claude/profile.py``): Codex
0.169.0 runs it before the model request and waits for it, so every message paid for spawning
the relay there (bench_realcli: Enter → model request ~20 ms more than the direct driver's).
The rollout's user line is the acceptance record instead (Codex flushes rollout lines one by
one, ~80–160 ms after Enter), and its turn's ``task_started`` ``turn_id`` — the same id Codex's
hook payloads carry — tells this parser which envelope a ``Stop`` of that turn belongs to
(``PromptLearner.learn``). A ``Stop`` recorded before its turn's prompt line was read (a rollout
named only at the first turn, read late) is held until then.

Codex fires ``Stop`` before it closes the task (``task_complete`` comes a few ms later), and the
host may paste the next message into that window: Codex then merges it into the same turn and
fires ``Stop`` again. The merged prompt line re-teaches the turn id, so that second ``Stop`` (and
the rollout's turn end) complete the newer message (bench_realcli bursts: ~1 in 100 messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentbridge.events import AgentEvent
from agentbridge.hook_relay import normalize
from agentbridge.runtimes.claude.transcript import ClaudeHookParser

__all__ = ["HOOK_EVENTS", "CodexHookParser"]

#: the events relayed to the agent's hook log (``-c hooks.<Event>=…``)
HOOK_EVENTS = ["Stop"]


@dataclass
class CodexHookParser(ClaudeHookParser):
    """Claude's hook parser (same record schema), keyed by Codex's ``turn_id``.

    Codex payloads carry no ``prompt_id``; their ``turn_id`` plays its part, and the rollout's
    prompt record carries the same id (``CodexTranscriptParser``).
    """

    def feed(self, record: dict[str, Any]) -> list[AgentEvent]:
        """One hook record (wrapped or bare), with ``turn_id`` read as the prompt id."""
        wrapped = normalize(record)
        payload = wrapped.get("payload") if wrapped is not None else None
        if wrapped is not None and isinstance(payload, dict) and "prompt_id" not in payload:
            turn_id = payload.get("turn_id")
            if isinstance(turn_id, str):
                record = {**wrapped, "payload": {**payload, "prompt_id": turn_id}}
        return super().feed(record)
