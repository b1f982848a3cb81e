"""Parser of Codex rollout files (``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl``).

Why these lines (measured on Codex 0.169.0): each line is ``{"timestamp", "ordinal", "type",
"payload"}``; a turn is ``event_msg task_started`` → ``response_item`` role user (the prompt,
after injected ``<environment_context>`` blocks) → ``response_item`` role assistant →
``event_msg task_complete`` (``last_agent_message``; an ``error`` object instead when the turn
ended in an API error). ``turn_aborted`` marks an interrupt. Lines are flushed one by one.

The prompt record carries the ``turn_id`` of ``task_started`` as its ``prompt_id``: the relay has
no ``UserPromptSubmit`` hook (``runtimes/codex/hooks.py``), so this line is the acceptance
record and tells the hook parser which envelope a ``Stop`` of that turn belongs to.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agentbridge.envelope import Envelope, parse_envelope
from agentbridge.events import AgentEvent, AgentEventKind

__all__ = ["CodexTranscriptParser", "codex_user_text"]

log = logging.getLogger(__name__)

#: Blocks Codex adds to user messages itself; never the user's text.
INJECTED_PREFIXES = (
    "<environment_context>",
    "<user_instructions>",
    "<permissions instructions>",
    "<skills_instructions>",
    "<user_shell_command>",
    "<turn_aborted>",
    "# AGENTS.md instructions",
)


def codex_user_text(content: Any) -> str:
    """The user's own text of a ``response_item`` message content (injected blocks skipped)."""
    if not isinstance(content, list):
        return ""
    texts = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") not in ("input_text", "text"):
            continue
        text = block.get("text")
        if isinstance(text, str) and not text.lstrip().startswith(INJECTED_PREFIXES):
            texts.append(text)
    return "\n".join(texts)


def _output_text(content: Any) -> str:
    if not isinstance(content, list):
        return ""
    parts = [
        b["text"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "output_text" and isinstance(b.get("text"), str)
    ]
    return "".join(parts)


class CodexTranscriptParser:
    """Stateful per rollout file: remembers the envelope of the prompt that opened the turn."""

    def __init__(self) -> None:
        self.corrupt_lines = 0
        self.session_id: str | None = None
        self._envelope: Envelope | None = None
        self._turn_id: str | None = None
        self._prompted = False
        self._errored = False

    def reset(self) -> None:
        """Forget per-file state (a new rollout file); the corrupt-line count is kept."""
        self.session_id = None
        self._envelope = None
        self._turn_id = None
        self._prompted = False
        self._errored = False

    def feed(self, line: str) -> list[AgentEvent]:
        """Events for one rollout line; a corrupt line is counted and logged, never raised."""
        if not line.strip():
            return []
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            payload = record.get("payload")
            if not isinstance(payload, dict):
                payload = {}
            return self._dispatch(str(record.get("type", "")), payload)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.corrupt_lines += 1
            log.warning("codex rollout: skipping corrupt line (%s): %.120r", exc, line)
            return []

    def _event(self, kind: AgentEventKind, text: str = "") -> AgentEvent:
        return AgentEvent(kind, self._envelope, text, "transcript", self.session_id)

    def _dispatch(self, kind: str, payload: dict[str, Any]) -> list[AgentEvent]:
        sub = payload.get("type")
        if kind == "session_meta":
            sid = payload.get("id") or payload.get("session_id")
            self.session_id = str(sid) if sid else self.session_id
            return []
        if kind == "event_msg":
            return self._event_msg(str(sub), payload)
        if kind == "response_item":
            return self._response_item(str(sub), payload)
        return []

    def _event_msg(self, sub: str, payload: dict[str, Any]) -> list[AgentEvent]:
        if sub == "task_started":
            self._envelope = None
            turn_id = payload.get("turn_id")
            self._turn_id = turn_id if isinstance(turn_id, str) else None
            self._prompted = False
            self._errored = False
            return []
        if sub == "task_complete":
            error = payload.get("error")
            if error:
                message = error.get("message") if isinstance(error, dict) else str(error)
                events = (
                    [] if self._errored else [self._event(AgentEventKind.API_ERROR, str(message))]
                )
            else:
                last = payload.get("last_agent_message")
                events = [
                    self._event(
                        AgentEventKind.TURN_COMPLETED, last if isinstance(last, str) else ""
                    )
                ]
            self._prompted = False
            return events
        if sub == "turn_aborted":
            return [self._event(AgentEventKind.TURN_ABORTED, str(payload.get("reason") or ""))]
        if sub in ("error", "stream_error_fatal"):
            self._errored = True
            return [self._event(AgentEventKind.API_ERROR, str(payload.get("message") or ""))]
        if sub in ("token_count", "thread_settings_applied", "item_completed", "item_started"):
            return []
        return [self._event(AgentEventKind.PROGRESS, sub)]

    def _response_item(self, sub: str, payload: dict[str, Any]) -> list[AgentEvent]:
        if sub == "message" and payload.get("role") == "user":
            text = codex_user_text(payload.get("content"))
            if not text:
                return []
            # A prompt names its turn (the ``turn_id`` Codex's Stop hook carries). Text merged
            # into a running turn: a person's (no envelope) leaves the turn to the message it
            # serves; one of ours was pasted after the last message's early Stop (the turn not
            # yet closed), so the rest of the turn and its end are that newer message's.
            envelope = parse_envelope(text)
            merged = self._prompted
            if not merged or envelope is not None:
                self._envelope = envelope
            self._prompted = True
            turn_id = self._turn_id if not merged or envelope is not None else None
            return [AgentEvent(AgentEventKind.PROMPT_RECORDED, envelope, text,
                               "transcript", self.session_id, turn_id)]  # fmt: skip
        if sub == "message" and payload.get("role") == "assistant":
            text = _output_text(payload.get("content"))
            return [self._event(AgentEventKind.ASSISTANT_TEXT, text)] if text else []
        if sub in ("function_call", "function_call_output", "custom_tool_call", "local_shell_call"):
            return [self._event(AgentEventKind.PROGRESS, sub)]
        return []
