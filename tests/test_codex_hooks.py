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
