"""Claude Code's JSONL transcript and hook records → normalized ``AgentEvent``s.

Facts this relies on (shared/notes/agent-clis.md): a prompt is a ``type: user`` line with a
*string* ``message.content`` (tool results are user lines with list content); the assistant writes
one line per content block; the turn ends with ``{"type": "system", "subtype": "turn_duration"}``;
an Esc interrupt writes the user line and no turn end; a queued prompt is its own turn. Unknown
fields are ignored so newer CLI versions keep working; a corrupt line is counted, never raised.

Line order is not turn order: Claude 2.1.197 can write a session's first flush out of order (the
assistant line or the turn end before the prompt line), so a line joins a turn through its
``parentUuid`` (or ``logicalParentUuid``) chain; a line whose ancestor is not written yet is held
and replayed, in chain order, when it arrives. Chains also dangle (Claude sometimes names a parent
it never writes), so file order stays the fallback: a line with no uuid or parent, or whose parent
is unknown while a turn is open, joins the open turn, and an end never waits while a turn is open.
A duplicated line (same uuid and message) is mere progress: each turn event is emitted once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from agentbridge.envelope import Envelope, parse_envelope
from agentbridge.events import AgentEvent, AgentEventKind
from agentbridge.hook_relay import normalize

__all__ = ["ClaudeHookParser", "ClaudeTranscriptParser", "parse_claude_hook"]

log = logging.getLogger(__name__)

K = AgentEventKind

# User lines with string content that are records of local slash commands, not model turns.
_COMMAND_TAGS = ("<command-name>", "<command-message>", "<command-args>")
_OUTPUT_TAGS = ("<local-command-stdout>", "<local-command-stderr>", "<local-command-caveat>")
_LOCAL_COMMAND_PREFIXES = _COMMAND_TAGS + _OUTPUT_TAGS
_SYSTEM_REMINDER = "<system-reminder>"
_INTERRUPTED = "[Request interrupted by user"

# What a line means for turn tracking (decided once, when it arrives).
_PROMPT, _INTERRUPT, _TEXT, _ERROR, _END, _OTHER = "prompt", "interrupt", "text", "error", "end", ""

MAX_SEEN = 8192  # fingerprints of attributed lines (FIFO): drop duplicates, place late lines
MAX_HELD = 512  # lines waiting for an ancestor; beyond it the oldest is dropped, events lost


class _Corrupt(ValueError):
    """A line that is not a transcript record we can read."""


@dataclass
class _Turn:
    envelope: Envelope | None
    last_text: str = ""
    last_text_msg: str | None = None
    errored: bool = False
    done: bool = False


@dataclass(frozen=True)
class _Line:
    """A record reduced on arrival (so a corrupt line never fails someone else's replay)."""

    kind: str
    sid: str | None
    uuid: str | None
    parent: str | None
    digest: int
    text: str = ""
    msg_id: str | None = None
    prompt_id: str | None = None  #: ``promptId`` of a prompt line (hook ``prompt_id``)


def _prompt_text(content: Any) -> str | None:
    """The user's text of a prompt line, or None when the line is not a prompt."""
    if isinstance(content, str):
        return None if content.lstrip().startswith(_LOCAL_COMMAND_PREFIXES) else content
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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _meaning(rec: dict[str, Any]) -> tuple[str, str, str | None]:
    """(kind, text, assistant message id) of one record; raises ``_Corrupt``."""
    kind = rec["type"]
    if kind == "user":
        message = rec.get("message")
        if not isinstance(message, dict):
            raise _Corrupt("user line without a message object")
        origin = rec.get("origin")
        # a non-human origin (e.g. a background-task notification) must not abort our turn
        other = isinstance(origin, dict) and origin.get("kind") not in (None, "human")
        if other or rec.get("isMeta") or rec.get("isSidechain") or rec.get("isCompactSummary"):
            return _OTHER, "", None
        text = _prompt_text(message.get("content"))
        if text is None:
            return _OTHER, "", None
        # Esc: Claude records the interruption, no turn end
        return (_INTERRUPT if text.startswith(_INTERRUPTED) else _PROMPT), text, None
    if kind == "assistant":
        message = rec.get("message")
        if not isinstance(message, dict):
            raise _Corrupt("assistant line without a message object")
        text = _assistant_text(message.get("content", []))
        if rec.get("isApiErrorMessage"):
            return _ERROR, text, None
        if rec.get("isSidechain") or not text:
            return _OTHER, "", None
        return _TEXT, text, _str(message.get("id"))
    if kind == "system" and rec.get("subtype") == "turn_duration":
        return _END, "", None
    return _OTHER, "", None


def _ev(kind: AgentEventKind, env: Envelope | None, text: str, sid: str | None) -> AgentEvent:
    return AgentEvent(kind, env, text, "transcript", sid)


def _line(rec: dict[str, Any]) -> _Line:
    kind, text, msg_id = _meaning(rec)
    # Duplicates Claude writes keep uuid, type and message but may change metadata (promptId,
    # version, even parentUuid), so only type and message identify "the same line".
    key = json.dumps([rec["type"], rec.get("subtype"), rec.get("message")], default=str)
    parent = _str(rec.get("parentUuid")) or _str(rec.get("logicalParentUuid"))
    sid, uuid = _str(rec.get("sessionId")), _str(rec.get("uuid"))
    return _Line(kind, sid, uuid, parent, hash(key), text, msg_id, _str(rec.get("promptId")))


class ClaudeTranscriptParser:
    """Stateful parser of one Claude Code transcript file (``feed`` one line at a time).

    ``_current`` is the open turn in file order (a new prompt aborts it); ``_seen`` maps the uuid
    of every attributed line to (digest, turn) so children, duplicates and late lines find their
    turn; ``_held`` keeps lines whose chain is not complete yet, ``_waiting`` indexes them by the
    parent uuid they wait for. A finished turn keeps no text, only its lines' fingerprints.
    """

    def __init__(self) -> None:
        self.corrupt_lines = 0
        self._current: _Turn | None = None
        self._seen: dict[str, tuple[int, _Turn | None]] = {}
        self._held: dict[str, _Line] = {}
        self._waiting: dict[str, list[str]] = {}

    def reset(self) -> None:
        """Forget the open turn and all chains: the session moved to another transcript file."""
        self._current, self._seen, self._held, self._waiting = None, {}, {}, {}

    def feed(self, line: str) -> list[AgentEvent]:
        if not line.strip():
            return []
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                raise _Corrupt("not a typed JSON object")
            item = _line(record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.corrupt_lines += 1
            log.warning("claude transcript: skipped corrupt line (%s): %.200r", exc, line)
            return []
        return self._arrive(item)

    # -- which turn a line belongs to -------------------------------------------------------

    def _arrive(self, item: _Line) -> list[AgentEvent]:
        seen = self._seen.get(item.uuid or "")
        if item.uuid in self._held or (seen is not None and seen[0] == item.digest):
            turn = seen[1] if seen is not None else None  # a duplicate: already reported
            return [_ev(K.PROGRESS, turn.envelope if turn else None, "", item.sid)]
        if item.kind == _PROMPT:
            out: list[AgentEvent] = []
            if item.parent in self._held and self._current is not None:
                # what the prompt follows must belong to the turn it ends: settle it first
                out = self._force(item.parent, self._current)
            return out + self._resolve(item, None)
        if item.uuid is None or item.parent is None:
            return self._resolve(item, self._current)  # no chain: file order
        seen = self._seen.get(item.parent)
        if seen is not None:
            return self._resolve(item, seen[1])
        if item.parent in self._held:
            self._hold(item)
            if item.kind == _END and self._current is not None:
                return self._force(item.uuid, self._current)
            return []
        if self._current is not None:
            return self._resolve(item, self._current)  # a parent Claude never wrote: file order
        self._hold(item)  # e.g. the first flush wrote this before its prompt
        return []

    def _hold(self, item: _Line) -> None:
        assert item.uuid is not None and item.parent is not None
        self._held[item.uuid] = item
        self._waiting.setdefault(item.parent, []).append(item.uuid)
        while len(self._held) > MAX_HELD:
            dropped = self._unhold(next(iter(self._held)))
            log.warning("claude transcript: dropped a line its chain never reached: %r", dropped)

    def _unhold(self, uuid: str) -> _Line | None:
        item = self._held.pop(uuid, None)
        if item is not None and item.parent is not None:
            siblings = self._waiting.get(item.parent, [])
            if uuid in siblings:
                siblings.remove(uuid)
            if not siblings:
                self._waiting.pop(item.parent, None)
        return item

    def _force(self, uuid: str, turn: _Turn) -> list[AgentEvent]:
        """Attribute the held chain above ``uuid`` (its topmost held ancestor and everything
        waiting below it) to ``turn``: its missing ancestor is taken to be one never written."""
        top, chain = uuid, {uuid}
        while (parent := self._held[top].parent) in self._held and parent not in chain:
            top = parent or ""
            chain.add(top)
        root = self._unhold(top)
        return self._resolve(root, turn) if root is not None else []

    def _resolve(self, item: _Line, owner: _Turn | None) -> list[AgentEvent]:
        """Report ``item`` as part of ``owner``, then replay what waited for it, in chain order."""
        out: list[AgentEvent] = []
        stack = [(item, owner)]
        while stack:
            line, turn = stack.pop()
            events, turn = self._apply(line, turn)
            out += events
            if line.uuid is None:
                continue
            self._seen.pop(line.uuid, None)
            self._seen[line.uuid] = (line.digest, turn)
            while len(self._seen) > MAX_SEEN:
                del self._seen[next(iter(self._seen))]
            for child in reversed(self._waiting.pop(line.uuid, [])):
                waiting = self._held.pop(child, None)
                if waiting is not None:
                    stack.append((waiting, turn))
        return out

    # -- what a line means for its turn -----------------------------------------------------

    def _apply(self, item: _Line, turn: _Turn | None) -> tuple[list[AgentEvent], _Turn | None]:
        """Events of one attributed line, and the turn its children belong to."""
        sid = item.sid
        if item.kind == _PROMPT:
            envelope, current = parse_envelope(item.text), self._current
            recorded = AgentEvent(
                K.PROMPT_RECORDED, envelope, item.text, "transcript", sid, item.prompt_id
            )
            if envelope is not None and current is not None and current.envelope == envelope:
                # the same prompt written again (Claude rewinds a rate-limited prompt): the turn
                # goes on; only Esc or another prompt interrupts it
                return [recorded], current
            events = self._abort(current, sid)
            self._current = _Turn(envelope=envelope)
            return [*events, recorded], self._current
        env = turn.envelope if turn is not None else None
        if turn is not None and turn.done:  # a late line of a finished turn: its events are out
            return [_ev(K.PROGRESS, env, "", sid)], turn
        if item.kind == _INTERRUPT:
            return self._abort(turn, sid), turn
        if item.kind == _END:
            if turn is None:  # started reading mid-turn (or an end without prompt): no envelope
                return [_ev(K.TURN_COMPLETED, None, "", sid)], turn
            kind, text = (K.PROGRESS, "") if turn.errored else (K.TURN_COMPLETED, turn.last_text)
            self._finish(turn)
            return [_ev(kind, env, text, sid)], turn
        if item.kind == _ERROR:
            if turn is not None:
                turn.errored = True
            return [_ev(K.API_ERROR, env, item.text, sid)], turn
        if item.kind == _TEXT:
            if turn is not None:
                # one line per content block: text blocks of the same message belong together
                same = item.msg_id is not None and item.msg_id == turn.last_text_msg
                turn.last_text = turn.last_text + item.text if same else item.text
                turn.last_text_msg = item.msg_id
            return [_ev(K.ASSISTANT_TEXT, env, item.text, sid)], turn
        return [_ev(K.PROGRESS, env, "", sid)], turn

    def _abort(self, turn: _Turn | None, sid: str | None) -> list[AgentEvent]:
        """A turn that never ended (interrupted): report it once, then forget it."""
        if turn is None or turn.done:
            return []
        errored, text = turn.errored, turn.last_text
        self._finish(turn)
        return [] if errored else [_ev(K.TURN_ABORTED, turn.envelope, text, sid)]

    def _finish(self, turn: _Turn) -> None:
        turn.done, turn.last_text, turn.last_text_msg = True, "", None
        if self._current is turn:
            self._current = None


@dataclass
class ClaudeHookParser:
    """Hook relay records ``{"event": name, "payload": {...}}`` → events.

    A ``Stop`` payload carries ``prompt_id`` but not the prompt, so the envelope of each
    ``UserPromptSubmit`` is remembered by prompt id (and as the session's current prompt).

    Claude's relay installs no ``UserPromptSubmit`` hook (its cost, ~20 ms before every model
    request, even async): the host hands the transcript's prompt records to :meth:`learn`
    instead. Either way a turn's ``Stop`` can come first (async hooks, a fast model, the
    transcript's ~100 ms flush), so a ``Stop`` whose prompt id is not known yet is held and
    reported right after that prompt's record; it never falls back to the current prompt,
    which would be the previous turn's.
    """

    max_prompts: int = 256
    corrupt_lines: int = 0
    _by_prompt: dict[str, Envelope | None] = field(default_factory=dict)
    _current: dict[str, Envelope | None] = field(default_factory=dict)
    _held: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    def reset(self) -> None:
        self._by_prompt.clear()
        self._current.clear()
        self._held.clear()

    def learn(self, event: AgentEvent) -> list[AgentEvent]:
        """A transcript event: a prompt record with its id names that prompt's envelope (what a
        ``UserPromptSubmit`` hook would); returns the turn ends held for it."""
        if event.kind != K.PROMPT_RECORDED or event.prompt_id is None:
            return []
        return self._remember(event.prompt_id, event.envelope, event.session_id)

    def _remember(self, pid: str, env: Envelope | None, sid: str | None) -> list[AgentEvent]:
        self._by_prompt[pid] = env
        while len(self._by_prompt) > self.max_prompts:
            del self._by_prompt[next(iter(self._by_prompt))]
        self._current[sid or ""] = env
        return [_turn_end(name, held, env, sid) for name, held in self._held.pop(pid, [])]

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
        """One hook record: the relay's wrapped form or a bare payload (the shell relay)."""
        record = dict(normalize(record) or {})
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
            recorded = AgentEvent(K.PROMPT_RECORDED, env, prompt, "hook", sid, pid)
            if pid is None:
                self._current[skey] = env
                return [recorded]
            return [recorded, *self._remember(pid, env, sid)]
        if name in ("Stop", "StopFailure"):
            # kept, not popped: a second Stop (stop_hook_active) must carry the same envelope
            if pid is not None and pid not in self._by_prompt:
                self._held.setdefault(pid, []).append((name, payload))
                while len(self._held) > self.max_prompts:
                    del self._held[next(iter(self._held))]
                return []
            env = self._by_prompt[pid] if pid is not None else self._current.get(skey)
            return [_turn_end(name, payload, env, sid)]
        if name in ("PreToolUse", "PostToolUse", "SubagentStop"):
            return [AgentEvent(K.PROGRESS, self._current.get(skey), "", "hook", sid)]
        return []  # SessionStart, Notification, SessionEnd…: not turn evidence


def _turn_end(
    name: str, payload: dict[str, Any], env: Envelope | None, sid: str | None
) -> AgentEvent:
    """A ``Stop`` (the turn's answer) or ``StopFailure`` (an API error) record as its event."""
    if name == "StopFailure":
        return AgentEvent(K.API_ERROR, env, _error_text(payload), "hook", sid)
    text = payload.get("last_assistant_message")
    return AgentEvent(K.TURN_COMPLETED, env, text if isinstance(text, str) else "", "hook", sid)


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
