"""Codex's Stop hook names its turn by ``turn_id`` only; the rollout's prompt line teaches it.

Why: Codex's relay has no ``UserPromptSubmit`` hook (it ran before every model request), so a
``Stop`` record alone cannot say which message it ends. The rollout (a real Codex 0.169.0 one,
``tests/data/codex``) records each turn's ``turn_id`` at ``task_started``; its prompt line
carries that id and the hook parser learns the envelope from it — before or after the Stop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentbridge.events import AgentEvent, AgentEventKind
from agentbridge.plugin.protocols import PromptLearner
from agentbridge.runtimes import CodexProfile
from agentbridge.runtimes.codex.hooks import CodexHookParser
from agentbridge.runtimes.codex.transcript import CodexTranscriptParser

ROLLOUT = Path(__file__).parent / "data" / "codex" / "multi_turn_errors_resume.jsonl"
K = AgentEventKind


def _turn_ids() -> list[str]:
    lines = [json.loads(line) for line in ROLLOUT.read_text().splitlines() if line.strip()]
    return [
        line["payload"]["turn_id"]
        for line in lines
        if line["type"] == "event_msg" and line["payload"].get("type") == "task_started"
    ]


def _prompts() -> list[AgentEvent]:
    parser = CodexTranscriptParser()
    events = [e for line in ROLLOUT.read_text().splitlines() for e in parser.feed(line)]
    return [e for e in events if e.kind is K.PROMPT_RECORDED]


def _stop(turn_id: str, answer: str) -> dict[str, Any]:
    """A Stop record as the shell relay writes it: Codex's bare payload (fields as measured)."""
    return {
        "session_id": "01a2088c-5ff0-7c00-9b4b-7c1ad7cbd3a4",
        "turn_id": turn_id,
        "transcript_path": str(ROLLOUT),
        "cwd": "/tmp/h4-exp/codex/work",
        "hook_event_name": "Stop",
        "model": "mock-model",
        "permission_mode": "bypassPermissions",
        "stop_hook_active": False,
        "last_assistant_message": answer,
    }


def test_each_prompt_record_carries_its_turn_id() -> None:
    prompts = _prompts()
    assert [p.envelope.message_id for p in prompts if p.envelope] == [1, 2, 9, 11, 500]
    assert [p.prompt_id for p in prompts] == _turn_ids()


def test_a_stop_is_matched_by_turn_id_whether_it_comes_before_or_after_the_prompt() -> None:
    parser = CodexProfile().new_hook_parser()
    assert isinstance(parser, CodexHookParser) and isinstance(parser, PromptLearner)
    turns = _turn_ids()
    # the third turn's Stop arrives before the rollout was read (a rollout found late): held,
    # never given the current prompt's envelope (that would complete the wrong message)
    assert parser.feed(_stop(turns[2], "answer to 9")) == []
    released: list[AgentEvent] = []
    for prompt in _prompts():
        released += parser.learn(prompt)
    assert [(e.kind, e.envelope.message_id if e.envelope else None, e.text) for e in released] == [
        (K.TURN_COMPLETED, 9, "answer to 9")
    ]
    # a Stop after its prompt was learned: at once, with its own turn's envelope
    (late,) = parser.feed({"event": "Stop", "payload": _stop(turns[3], "answer to 11")})
    assert late.kind is K.TURN_COMPLETED and late.envelope is not None
    assert late.envelope.message_id == 11 and late.text == "answer to 11"
    # a Stop of a turn no prompt line named (Codex's hidden title thread): held, not guessed
    assert parser.feed(_stop("01a2088c-0000-7000-8000-000000000000", "a title")) == []
    assert parser.corrupt_lines == 0


def _line(kind: str, payload: dict[str, Any]) -> str:
    return json.dumps({"timestamp": "2026-12-07T10:54:41.250Z", "type": kind, "payload": payload})


def _user(text: str) -> str:
    content = [{"type": "input_text", "text": text}]
    return _line("response_item", {"type": "message", "role": "user", "content": content})


def test_a_message_merged_after_an_early_stop_gets_the_rest_of_the_turn() -> None:
    """As seen in a bench_realcli burst: message 40's Stop came before Codex closed the task,
    message 41 was pasted into that window and merged; Codex fired Stop again, then closed."""
    turn = "01a25024-3a45-73f1-ab3f-8bd1aa7b8189"
    transcript, hooks = CodexTranscriptParser(), CodexHookParser()

    def read(*lines: str) -> list[AgentEvent]:
        events = [e for line in lines for e in transcript.feed(line)]
        return events + [h for e in events for h in hooks.learn(e)]

    def ids(events: list[AgentEvent]) -> list[tuple[AgentEventKind, int | None]]:
        return [(e.kind, e.envelope.message_id if e.envelope else None) for e in events]

    start = _line("event_msg", {"type": "task_started", "turn_id": turn})
    first = read(start, _user("[agentbridge message=40 attempt=1 channel=local sender=bench]\na"))
    assert ids(first) == [(K.PROMPT_RECORDED, 40)]
    assert ids(hooks.feed(_stop(turn, "answer a"))) == [(K.TURN_COMPLETED, 40)]  # early Stop
    human = read(_user("typed by a person in the pane"))  # merged text without an envelope
    assert ids(human) == [(K.PROMPT_RECORDED, None)] and human[0].prompt_id is None
    merged = read(_user("[agentbridge message=41 attempt=1 channel=local sender=bench]\nb"))
    assert ids(merged) == [(K.PROMPT_RECORDED, 41)] and merged[0].prompt_id == turn
    assert ids(hooks.feed(_stop(turn, "answer b"))) == [(K.TURN_COMPLETED, 41)]
    end = read(_line("event_msg", {"type": "task_complete", "turn_id": turn}))
    assert ids(end) == [(K.TURN_COMPLETED, 41)]
