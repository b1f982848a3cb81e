"""Claude Code's JSONL transcript and hook records → normalized ``AgentEvent``s.

Facts this relies on (shared/notes/agent-clis.md): a prompt is a ``type: user`` line with a
*string* ``message.content`` (tool results are user lines with list content); the assistant writes
one line per content block; the turn ends with ``{"type": "system", "subtype": "turn_duration"}``;
an Esc interrupt writes the user line and no turn end; a queued prompt is its own turn. Unknown
fields are ignored so newer CLI versions keep working; a corrupt line is counted, never raised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from agentbridge.agent_events import AgentEvent, AgentEventKind
from agentbridge.envelope import Envelope, parse_envelope

__all__ = ["ClaudeHookParser", "ClaudeTranscriptParser", "parse_claude_hook"]

log = logging.getLogger(__name__)

K = AgentEventKind

# User lines with string content that are records of local slash commands, not model turns.
_LOCAL_COMMAND_PREFIXES = (
    "<command-name>",
    "<command-message>",
    "<command-args>",
    "<local-command-stdout>",
    "<local-command-stderr>",
    "<local-command-caveat>",
)
_SYSTEM_REMINDER = "<system-reminder>"
_INTERRUPTED = "[Request interrupted by user"


class _Corrupt(ValueError):
    """A line that is not a transcript record we can read."""


@dataclass
class _Turn:
    envelope: Envelope | None
    last_text: str = ""
    last_text_msg: str | None = None
    errored: bool = False


def _prompt_text(content: Any) -> str | None:
    """The user's text of a prompt line, or None when the line is not a prompt."""
    if isinstance(content, str):
        if content.lstrip().startswith(_LOCAL_COMMAND_PREFIXES):
            return None
        return content
    if not isinstance(content, list) or not content:
        raise _Corrupt("user content is neither a string nor a list")
    texts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            raise _Corrupt("user content block is not an object")
        kind = block.get("type")
        if kind == "tool_result":
            return None  # a tool result, not a prompt
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise _Corrupt("text block without text")
            if not text.lstrip().startswith(_SYSTEM_REMINDER):
                texts.append(text)
        # images and other blocks attached to a prompt are not text
    return "\n".join(texts) if texts else None


def _assistant_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Corrupt("assistant content is neither a string nor a list")
    parts = [
        b["text"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    return "".join(parts)


class ClaudeTranscriptParser:
    """Stateful parser of one Claude Code transcript file (``feed`` one line at a time)."""

    def __init__(self) -> None:
        self.corrupt_lines = 0
        self._turn: _Turn | None = None

    def reset(self) -> None:
        """Forget the open turn: the session moved to another transcript file."""
        self._turn = None

    def feed(self, line: str) -> list[AgentEvent]:
        if not line.strip():
            return []
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                raise _Corrupt("not a typed JSON object")
            return self._record(record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.corrupt_lines += 1
            log.warning("claude transcript: skipped corrupt line (%s): %.200r", exc, line)
            return []

    # -- per record type --------------------------------------------------------------------

    def _record(self, rec: dict[str, Any]) -> list[AgentEvent]:
        sid = rec.get("sessionId") if isinstance(rec.get("sessionId"), str) else None
        kind = rec["type"]
        if kind == "user":
            return self._user(rec, sid)
        if kind == "assistant":
            return self._assistant(rec, sid)
        if kind == "system" and rec.get("subtype") == "turn_duration":
            return self._turn_end(sid)
        return [self._event(K.PROGRESS, sid)]

    def _event(self, kind: AgentEventKind, sid: str | None, text: str = "") -> AgentEvent:
        env = self._turn.envelope if self._turn is not None else None
        return AgentEvent(kind, env, text, source="transcript", session_id=sid)

    def _user(self, rec: dict[str, Any], sid: str | None) -> list[AgentEvent]:
        message = rec.get("message")
        if not isinstance(message, dict):
            raise _Corrupt("user line without a message object")
        if rec.get("isMeta") or rec.get("isSidechain") or rec.get("isCompactSummary"):
            return [self._event(K.PROGRESS, sid)]
        origin = rec.get("origin")
        if isinstance(origin, dict) and origin.get("kind") not in (None, "human"):
            # e.g. a background-task notification: not a prompt, must not abort our turn
            return [self._event(K.PROGRESS, sid)]
        text = _prompt_text(message.get("content"))
        if text is None:
            return [self._event(K.PROGRESS, sid)]
        if text.startswith(_INTERRUPTED):
            return self._abort(sid)  # Esc: Claude records the interruption, no turn end
        events = self._abort(sid)
        self._turn = _Turn(envelope=parse_envelope(text))
        events.append(self._event(K.PROMPT_RECORDED, sid, text))
        return events

    def _abort(self, sid: str | None) -> list[AgentEvent]:
        """A turn that never ended (interrupted): report it once, then forget it."""
        turn, self._turn = self._turn, None
        if turn is None or turn.errored:
            return []
        return [AgentEvent(K.TURN_ABORTED, turn.envelope, turn.last_text, "transcript", sid)]

    def _assistant(self, rec: dict[str, Any], sid: str | None) -> list[AgentEvent]:
        message = rec.get("message")
        if not isinstance(message, dict):
            raise _Corrupt("assistant line without a message object")
        text = _assistant_text(message.get("content", []))
        if rec.get("isApiErrorMessage"):
            if self._turn is not None:
                self._turn.errored = True
            return [self._event(K.API_ERROR, sid, text)]
        if rec.get("isSidechain") or not text:
            return [self._event(K.PROGRESS, sid)]
        if self._turn is not None:
            msg_id = message.get("id") if isinstance(message.get("id"), str) else None
            # one line per content block: text blocks of the same message belong together
            if msg_id is not None and msg_id == self._turn.last_text_msg:
                self._turn.last_text += text
            else:
                self._turn.last_text = text
            self._turn.last_text_msg = msg_id
        return [self._event(K.ASSISTANT_TEXT, sid, text)]

    def _turn_end(self, sid: str | None) -> list[AgentEvent]:
        turn, self._turn = self._turn, None
        if turn is None:
            # we started reading mid-turn (or a turn end without prompt): no envelope known
            return [AgentEvent(K.TURN_COMPLETED, None, "", "transcript", sid)]
        if turn.errored:
            return [AgentEvent(K.PROGRESS, turn.envelope, "", "transcript", sid)]
        return [AgentEvent(K.TURN_COMPLETED, turn.envelope, turn.last_text, "transcript", sid)]


@dataclass
class ClaudeHookParser:
    """Hook relay records ``{"event": name, "payload": {...}}`` → events.

    A ``Stop`` payload carries ``prompt_id`` but not the prompt, so the envelope of each
    ``UserPromptSubmit`` is remembered by prompt id (and as the session's current prompt).
    """

    max_prompts: int = 256
    corrupt_lines: int = 0
    _by_prompt: dict[str, Envelope | None] = field(default_factory=dict)
    _current: dict[str, Envelope | None] = field(default_factory=dict)

    def reset(self) -> None:
        self._by_prompt.clear()
        self._current.clear()

    def feed_line(self, line: str) -> list[AgentEvent]:
        """One line of the relay's events file (the host tails it like a transcript)."""
        if not line.strip():
            return []
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            self.corrupt_lines += 1
            log.warning("claude hooks: skipped corrupt line: %.200r", line)
            return []
        return self.feed(record)

    def feed(self, record: dict[str, Any]) -> list[AgentEvent]:
        payload = record.get("payload")
        if not isinstance(payload, dict):
            self.corrupt_lines += 1
            return []
        name = record.get("event") or payload.get("hook_event_name")
        sid = payload.get("session_id") if isinstance(payload.get("session_id"), str) else None
        pid = payload.get("prompt_id") if isinstance(payload.get("prompt_id"), str) else None
        skey = sid or ""
        if name == "UserPromptSubmit":
            prompt = payload.get("prompt")
            if not isinstance(prompt, str):
                self.corrupt_lines += 1
                return []
            env = parse_envelope(prompt)
            if pid is not None:
                self._by_prompt[pid] = env
                while len(self._by_prompt) > self.max_prompts:
                    del self._by_prompt[next(iter(self._by_prompt))]
            self._current[skey] = env
            return [AgentEvent(K.PROMPT_RECORDED, env, prompt, "hook", sid)]
        if name in ("Stop", "StopFailure"):
            # kept, not popped: a second Stop (stop_hook_active) must carry the same envelope
            if pid is not None and pid in self._by_prompt:
                env = self._by_prompt[pid]
            else:
                env = self._current.get(skey)
            if name == "Stop":
                text = payload.get("last_assistant_message")
                text = text if isinstance(text, str) else ""
                return [AgentEvent(K.TURN_COMPLETED, env, text, "hook", sid)]
            return [AgentEvent(K.API_ERROR, env, _error_text(payload), "hook", sid)]
        if name in ("PreToolUse", "PostToolUse", "SubagentStop"):
            return [AgentEvent(K.PROGRESS, self._current.get(skey), "", "hook", sid)]
        return []  # SessionStart, Notification, SessionEnd…: not turn evidence


def _error_text(payload: dict[str, Any]) -> str:
    for key in ("error", "error_message", "message", "last_assistant_message", "reason"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
    return ""


def parse_claude_hook(record: dict[str, Any]) -> list[AgentEvent]:
    """Stateless convenience: a ``Stop`` here cannot know its envelope (it comes back None);
    a host should keep one ``ClaudeHookParser`` per session instead."""
    return ClaudeHookParser().feed(record)
