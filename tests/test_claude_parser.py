"""ClaudeTranscriptParser and ClaudeHookParser on realistic Claude Code records."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from agentbridge.agent.tail import FileTail
from agentbridge.envelope import Envelope, wrap
from agentbridge.events import AgentEvent
from agentbridge.events import AgentEventKind as K
from agentbridge.runtimes.claude import transcript as claude_module
from agentbridge.runtimes.claude.transcript import (
    ClaudeHookParser,
    ClaudeTranscriptParser,
    parse_claude_hook,
)
from agentbridge.testing import async_wait_until

SID = "6f1c2d3e-0000-4000-8000-000000000001"
ENV = Envelope(42, 1, "local", "alice", False)
ENV2 = Envelope(43, 1, "local", "bob", False)


def base(kind: str, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": "/work/proj",
        "sessionId": SID,
        "version": "2.1.197",
        "gitBranch": "main",
        "type": kind,
        "uuid": "u-1",
        "timestamp": "2026-11-23T13:00:00.000Z",
    }
    rec.update(kw)
    return rec


def user(text: str, source: str = "typed") -> str:
    return json.dumps(
        base(
            "user",
            message={"role": "user", "content": text},
            promptId="p-" + str(abs(hash(text))),
            promptSource=source,
            origin={"kind": "human"},
            permissionMode="default",
        )
    )


def assistant(text: str, msg_id: str = "msg_1", stop: str | None = "end_turn") -> str:
    return json.dumps(
        base(
            "assistant",
            requestId="req_1",
            message={
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 5},
            },
        )
    )


def tool_use() -> str:
    return json.dumps(
        base(
            "assistant",
            message={
                "id": "msg_t",
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "Bash",
                        "input": {"command": "ls"},
                    }
                ],
                "stop_reason": "tool_use",
            },
        )
    )


def tool_result() -> str:
    return json.dumps(
        base(
            "user",
            message={
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a\nb"}],
            },
            toolUseResult={"stdout": "a\nb", "stderr": ""},
        )
    )


TURN_END = json.dumps(base("system", subtype="turn_duration", durationMs=1234, isMeta=False))


def feed(parser: ClaudeTranscriptParser, *lines: str) -> list[tuple[K, Envelope | None, str]]:
    out: list[tuple[K, Envelope | None, str]] = []
    for line in lines:
        out.extend((e.kind, e.envelope, e.text) for e in parser.feed(line))
    return out


def test_injected_turn_with_tool_use() -> None:
    p = ClaudeTranscriptParser()
    prompt = wrap(ENV, "list files")
    events = feed(p, user(prompt), tool_use(), tool_result(), assistant("two files"), TURN_END)
    assert events == [
        (K.PROMPT_RECORDED, ENV, prompt),
        (K.PROGRESS, ENV, ""),
        (K.PROGRESS, ENV, ""),
        (K.ASSISTANT_TEXT, ENV, "two files"),
        (K.TURN_COMPLETED, ENV, "two files"),
    ]
    assert p.feed(TURN_END)[0].session_id == SID
    assert p.corrupt_lines == 0


def test_human_typed_turn_has_no_envelope() -> None:
    p = ClaudeTranscriptParser()
    events = feed(p, user("hello, typed by hand"), assistant("hi"), TURN_END)
    assert [(k, e) for k, e, _ in events] == [
        (K.PROMPT_RECORDED, None),
        (K.ASSISTANT_TEXT, None),
        (K.TURN_COMPLETED, None),
    ]


def test_forged_envelope_inside_text_is_not_parsed() -> None:
    p = ClaudeTranscriptParser()
    events = feed(p, user("please\n" + wrap(ENV, "x")))
    assert events[0][1] is None


def test_queued_prompts_are_separate_turns() -> None:
    p = ClaudeTranscriptParser()
    events = feed(
        p,
        user(wrap(ENV, "one")),
        assistant("echo: one", "m1"),
        TURN_END,
        user(wrap(ENV2, "two"), source="queued"),
        assistant("echo: two", "m2"),
        TURN_END,
    )
    completed = [(e, t) for k, e, t in events if k == K.TURN_COMPLETED]
    assert completed == [(ENV, "echo: one"), (ENV2, "echo: two")]
    assert not [k for k, _, _ in events if k == K.TURN_ABORTED]


def test_interrupted_turn_is_aborted_when_next_prompt_arrives() -> None:
    p = ClaudeTranscriptParser()
    events = feed(p, user(wrap(ENV, "long job")), tool_use(), user(wrap(ENV2, "next")))
    assert events[-2:] == [
        (K.TURN_ABORTED, ENV, ""),
        (K.PROMPT_RECORDED, ENV2, wrap(ENV2, "next")),
    ]


def test_interruption_marker_aborts_at_once() -> None:
    marker = json.dumps(
        base(
            "user",
            message={
                "role": "user",
                "content": [{"type": "text", "text": "[Request interrupted by user]"}],
            },
        )
    )
    p = ClaudeTranscriptParser()
    events = feed(p, user(wrap(ENV, "x")), marker, user("typed"))
    assert [k for k, _, _ in events] == [K.PROMPT_RECORDED, K.TURN_ABORTED, K.PROMPT_RECORDED]


def test_final_text_is_last_message_and_joins_its_blocks() -> None:
    p = ClaudeTranscriptParser()
    events = feed(
        p,
        user(wrap(ENV, "x")),
        assistant("thinking out loud", "m1", stop="tool_use"),
        tool_use(),
        tool_result(),
        assistant("final ", "m2"),
        assistant("answer", "m2"),
        TURN_END,
    )
    assert events[-1] == (K.TURN_COMPLETED, ENV, "final answer")


def test_api_error_ends_turn_without_completion() -> None:
    err = json.dumps(
        base(
            "assistant",
            isApiErrorMessage=True,
            message={
                "id": "e1",
                "role": "assistant",
                "model": "<synthetic>",
                "content": [{"type": "text", "text": "API Error: 529 overloaded"}],
            },
        )
    )
    p = ClaudeTranscriptParser()
    events = feed(p, user(wrap(ENV, "x")), err, TURN_END, user("next"))
    assert events[1] == (K.API_ERROR, ENV, "API Error: 529 overloaded")
    kinds = [k for k, _, _ in events]
    assert K.TURN_COMPLETED not in kinds and K.TURN_ABORTED not in kinds


def test_system_reminder_blocks_skipped_in_list_prompt() -> None:
    line = json.dumps(
        base(
            "user",
            message={
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>\nctx\n</system-reminder>"},
                    {"type": "text", "text": wrap(ENV, "body")},
                ],
            },
            promptSource="typed",
        )
    )
    p = ClaudeTranscriptParser()
    assert feed(p, line) == [(K.PROMPT_RECORDED, ENV, wrap(ENV, "body"))]


def test_corrupt_lines_counted_and_skipped() -> None:
    p = ClaudeTranscriptParser()
    bad = [
        '{"type": "user", "message": {"content": "trunc',
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "user", "message": "not an object"}',
        '{"type": "assistant", "message": {"content": 5}}',
        '{"type": "user", "message": {"content": [1]}}',
        "\udcff garbage \x00",
    ]
    events = feed(p, user(wrap(ENV, "x")), *bad, "", assistant("ok"), TURN_END)
    assert p.corrupt_lines == len(bad)
    assert events[-1] == (K.TURN_COMPLETED, ENV, "ok")


def test_other_known_lines_are_progress_and_meta_lines_open_no_turn() -> None:
    p = ClaudeTranscriptParser()
    meta = json.dumps(base("user", isMeta=True, message={"role": "user", "content": "caveat"}))
    cmd = json.dumps(
        base("user", message={"role": "user", "content": "<command-name>/clear</command-name>"})
    )
    snap = json.dumps({"type": "file-history-snapshot", "messageId": "x", "snapshot": {}})
    hook = json.dumps(base("system", subtype="stop_hook_summary", hookCount=1))
    events = feed(p, user(wrap(ENV, "x")), meta, cmd, snap, hook, TURN_END)
    assert [k for k, _, _ in events] == [K.PROMPT_RECORDED] + [K.PROGRESS] * 4 + [K.TURN_COMPLETED]
    assert events[-1][1] == ENV


def test_reset_forgets_open_turn() -> None:
    p = ClaudeTranscriptParser()
    feed(p, user(wrap(ENV, "x")))
    p.reset()
    assert feed(p, user("y"))[0][0] == K.PROMPT_RECORDED  # no TURN_ABORTED for the old file


def hook(name: str, **payload: Any) -> dict[str, Any]:
    body = {"session_id": SID, "transcript_path": "/t.jsonl", "cwd": "/w", "hook_event_name": name}
    body.update(payload)
    return {"event": name, "payload": body, "ts": 1.0}


def test_hook_parser_matches_stop_to_prompt_envelope() -> None:
    hp = ClaudeHookParser()
    ev = hp.feed(hook("UserPromptSubmit", prompt=wrap(ENV, "hi"), prompt_id="p1"))
    assert [(e.kind, e.envelope, e.source) for e in ev] == [(K.PROMPT_RECORDED, ENV, "hook")]
    hp.feed(hook("UserPromptSubmit", prompt=wrap(ENV2, "queued"), prompt_id="p2"))
    stop1 = hp.feed(hook("Stop", prompt_id="p1", last_assistant_message="echo: hi"))
    assert [(e.kind, e.envelope, e.text) for e in stop1] == [(K.TURN_COMPLETED, ENV, "echo: hi")]
    fail = hp.feed(hook("StopFailure", prompt_id="p2", error="rate_limit"))
    assert [(e.kind, e.envelope, e.text) for e in fail] == [(K.API_ERROR, ENV2, "rate_limit")]
    again = hp.feed(hook("Stop", prompt_id="p1", stop_hook_active=True, last_assistant_message="x"))
    assert again[0].envelope == ENV  # a repeated Stop is a duplicate, not a human turn
    assert hp.feed(hook("Notification", notification_type="idle_prompt")) == []
    assert hp.feed_line("not json") == [] and hp.corrupt_lines == 1
    assert hp.feed_line(json.dumps(hook("SessionStart", source="startup"))) == []


def test_hook_parser_holds_a_stop_recorded_before_its_prompt() -> None:
    """Async hooks run concurrently: a fast turn's Stop can land before its own prompt's record.
    It must wait for that record, never take the previous turn's envelope."""
    hp = ClaudeHookParser()
    hp.feed(hook("UserPromptSubmit", prompt=wrap(ENV, "first"), prompt_id="p1"))
    assert hp.feed(hook("Stop", prompt_id="p1", last_assistant_message="one"))[0].envelope == ENV
    assert hp.feed(hook("Stop", prompt_id="p2", last_assistant_message="two")) == []
    assert hp.feed(hook("StopFailure", prompt_id="p3", error="overloaded")) == []
    ev = hp.feed(hook("UserPromptSubmit", prompt=wrap(ENV2, "second"), prompt_id="p2"))
    assert [(e.kind, e.envelope, e.text) for e in ev] == [
        (K.PROMPT_RECORDED, ENV2, wrap(ENV2, "second")),
        (K.TURN_COMPLETED, ENV2, "two"),
    ]
    env3 = Envelope(44, 2, "local", "carol", False)
    ev = hp.feed(hook("UserPromptSubmit", prompt=wrap(env3, "third"), prompt_id="p3"))
    assert [(e.kind, e.envelope) for e in ev] == [(K.PROMPT_RECORDED, env3), (K.API_ERROR, env3)]
    assert ev[1].text == "overloaded"
    # held once: a later record of the same prompt does not replay the Stop
    again = hp.feed(hook("UserPromptSubmit", prompt=wrap(env3, "third"), prompt_id="p3"))
    assert [e.kind for e in again] == [K.PROMPT_RECORDED]
    # a Stop without a prompt id (older CLIs) still means the session's current prompt
    assert hp.feed(hook("Stop", last_assistant_message="x"))[0].envelope == env3
    small = ClaudeHookParser(max_prompts=2)
    for n in range(5):
        small.feed(hook("Stop", prompt_id=f"q{n}"))
    assert small.feed(hook("UserPromptSubmit", prompt="hand", prompt_id="q0")) == [
        AgentEvent(K.PROMPT_RECORDED, None, "hand", "hook", SID, "q0")
    ]  # the oldest held Stops were dropped: bounded memory


def test_hook_parser_learns_prompts_from_the_transcript() -> None:
    """Claude's relay has no UserPromptSubmit hook: the transcript's prompt line (its
    ``promptId``) tells the hook parser which envelope a Stop belongs to, whichever is first."""
    transcript, hp = ClaudeTranscriptParser(), ClaudeHookParser()
    first, second = user(wrap(ENV, "one")), user(wrap(ENV2, "two"))
    pid1, pid2 = json.loads(first)["promptId"], json.loads(second)["promptId"]

    def from_transcript(line: str) -> list[AgentEvent]:
        events = transcript.feed(line)
        return [e for ev in events for e in [ev, *hp.learn(ev)]]

    recorded = from_transcript(first)
    assert [(e.kind, e.envelope, e.prompt_id) for e in recorded] == [(K.PROMPT_RECORDED, ENV, pid1)]
    stop = hp.feed(hook("Stop", prompt_id=pid1, last_assistant_message="one!"))
    assert [(e.kind, e.envelope, e.text, e.source) for e in stop] == [
        (K.TURN_COMPLETED, ENV, "one!", "hook")
    ]
    # the Stop of a fast turn before the transcript's flush: held, then released after it
    assert hp.feed(hook("Stop", prompt_id=pid2, last_assistant_message="two!")) == []
    out = from_transcript(second)
    assert [(e.kind, e.envelope, e.source) for e in out] == [
        (K.TURN_ABORTED, ENV, "transcript"),  # the transcript never ended turn one
        (K.PROMPT_RECORDED, ENV2, "transcript"),
        (K.TURN_COMPLETED, ENV2, "hook"),
    ]
    assert out[-1].text == "two!"
    assert hp.learn(out[-1]) == [] and hp.learn(out[0]) == []  # only prompt records teach


def test_stateless_hook_helper() -> None:
    ev = parse_claude_hook(hook("UserPromptSubmit", prompt="typed by hand", prompt_id="p"))
    assert ev[0].kind == K.PROMPT_RECORDED and ev[0].envelope is None
    assert parse_claude_hook({"event": "Stop", "payload": "x"}) == []


def test_non_human_origin_does_not_open_or_abort_a_turn() -> None:
    note = json.dumps(
        base(
            "user",
            message={"role": "user", "content": "<task-notification>done</task-notification>"},
            origin={"kind": "task-notification"},
        )
    )
    p = ClaudeTranscriptParser()
    events = feed(p, user(wrap(ENV, "x")), note, assistant("ok"), TURN_END)
    assert [k for k, _, _ in events] == [
        K.PROMPT_RECORDED,
        K.PROGRESS,
        K.ASSISTANT_TEXT,
        K.TURN_COMPLETED,
    ]
    assert events[-1][1] == ENV


async def test_tailed_transcript_file_end_to_end(tmp_path: Path) -> None:
    """FileTail + parser on a real file written the way Claude flushes (batched, split)."""
    path = tmp_path / "projects" / "-work-proj" / f"{SID}.jsonl"
    parser = ClaudeTranscriptParser()
    events: list[AgentEvent] = []
    async with FileTail(path, lambda line: events.extend(parser.feed(line)), reconcile_interval=30):
        path.parent.mkdir(parents=True)
        blob = "\n".join([user(wrap(ENV, "hi")), assistant("echo: hi"), TURN_END]) + "\n"
        half = len(blob) // 2
        with path.open("a") as f:
            f.write(blob[:half])
            f.flush()
            f.write(blob[half:])

        async def done() -> bool:
            return any(e.kind == K.TURN_COMPLETED for e in events)

        await async_wait_until(done, timeout=5, what="turn completed")
    assert [(e.kind, e.envelope) for e in events] == [
        (K.PROMPT_RECORDED, ENV),
        (K.ASSISTANT_TEXT, ENV),
        (K.TURN_COMPLETED, ENV),
    ]
    assert events[-1].text == "echo: hi" and parser.corrupt_lines == 0


# -- turns resolved through the uuid/parentUuid chain ----------------------------------------

DATA = Path(__file__).parent / "data" / "claude"


def link(line: str, uid: str, parent: str | None, **extra: Any) -> str:
    """A helper line given its place in Claude's ``uuid``/``parentUuid`` chain."""
    rec = json.loads(line)
    rec.update(uuid=uid, parentUuid=parent, **extra)
    return json.dumps(rec)


def attachment(uid: str, parent: str) -> str:
    return link(json.dumps(base("attachment", attachment={"type": "todo"})), uid, parent)


def stop_summary(uid: str, parent: str) -> str:
    return link(json.dumps(base("system", subtype="stop_hook_summary", hookCount=1)), uid, parent)


SNAPSHOT = json.dumps({"type": "file-history-snapshot", "messageId": "x", "snapshot": {}})
PROMPT = wrap(ENV, "what is 2 + 2?")
P = link(user(PROMPT), "p", None)
A = link(assistant("four"), "a", "p")
E = link(TURN_END, "e", "a")
IN_ORDER = [
    (K.PROMPT_RECORDED, ENV, PROMPT),
    (K.ASSISTANT_TEXT, ENV, "four"),
    (K.TURN_COMPLETED, ENV, "four"),
]


def turn_events(
    events: list[tuple[K, Envelope | None, str]],
) -> list[tuple[K, Envelope | None, str]]:
    return [e for e in events if e[0] is not K.PROGRESS]


@pytest.mark.parametrize(
    "order",
    [[P, A, E], [E, A, P], [A, E, P], [A, P, E], [E, P, A]],
    ids=["in_order", "user_last", "end_before_user", "assistant_before_user", "end_first"],
)
def test_first_flush_out_of_order(order: list[str]) -> None:
    """Whatever the order of the first flush, the prompt is recorded when its line arrives and
    the turn end, replayed after it, carries the prompt's envelope and the final answer."""
    p = ClaudeTranscriptParser()
    assert feed(p, *order) == IN_ORDER
    assert not p._held and p.corrupt_lines == 0


def test_first_flush_shaped_like_the_real_capture() -> None:
    """tests/data/claude/first_flush_out_of_order.jsonl: the assistant line first, then a
    snapshot, the prompt, the attachments the assistant line hangs from, the stop hook, the end."""
    lines = [
        link(assistant("four"), "a", "att2"),
        SNAPSHOT,
        P,
        attachment("att1", "p"),
        attachment("att2", "att1"),
        attachment("att3", "a"),
        stop_summary("s", "att3"),
        link(TURN_END, "e", "s"),
    ]
    p = ClaudeTranscriptParser()
    events = feed(p, *lines)
    assert events[0] == (K.PROGRESS, None, "")  # the snapshot: no uuid, no open turn yet
    assert turn_events(events) == IN_ORDER
    assert [k for k, _, _ in events].count(K.PROGRESS) == 5


def test_real_capture_first_flush_out_of_order() -> None:
    p = ClaudeTranscriptParser()
    events = feed(p, *(DATA / "first_flush_out_of_order.jsonl").read_text().splitlines())
    ends = [(k, e.message_id if e else None) for k, e, _ in turn_events(events)]
    assert ends == [(K.PROMPT_RECORDED, 1), (K.ASSISTANT_TEXT, 1), (K.TURN_COMPLETED, 1)]
    assert turn_events(events)[-1][2].startswith("mock answer: ") and p.corrupt_lines == 0


def test_real_capture_multi_turn_is_read_as_before() -> None:
    """In-order files give the same turn events as the file-order reading did."""
    p = ClaudeTranscriptParser()
    events = feed(p, *(DATA / "multi_turn_errors_resume.jsonl").read_text().splitlines())
    got = [(k.value, e.message_id if e else None) for k, e, _ in turn_events(events)]
    R, T, C, X = "prompt_recorded", "assistant_text", "turn_completed", "api_error"
    assert got == [
        (R, 1), (T, 1), (C, 1),
        (R, 2), (R, 2), (X, 2),  # the rate-limited prompt was rewound: not an interrupt
        (R, 529), (X, 529), (R, 500), (X, 500), (R, 7), (X, 7),
        (R, 11), (T, 11), (C, 11),
        (R, 529), (X, 529), (R, 500), (X, 500),
        (R, 2), ("turn_aborted", 2), (R, 3), (X, 3),
    ]  # fmt: skip
    assert p.corrupt_lines == 0


TOOL_TURN = [
    link(assistant("let me look", "m1", stop="tool_use"), "a0", "p"),
    link(tool_use(), "t", "a0"),
    link(tool_result(), "r", "t"),
    link(assistant("final ", "m2"), "a1", "r"),
    link(assistant("answer", "m2"), "a2", "a1"),
    link(TURN_END, "e", "a2"),
]


@pytest.mark.parametrize("seed", range(12))
def test_tool_use_chain_written_before_the_prompt_in_any_order(seed: int) -> None:
    """A turn with tool_use/tool_result in the middle, every line written before the prompt in a
    shuffled order: replayed in chain order, so the final text joins the last message's blocks."""
    shuffled = TOOL_TURN[:]
    random.Random(seed).shuffle(shuffled)
    p = ClaudeTranscriptParser()
    assert feed(p, *shuffled) == []
    assert feed(p, P) == [
        (K.PROMPT_RECORDED, ENV, PROMPT),
        (K.ASSISTANT_TEXT, ENV, "let me look"),
        (K.PROGRESS, ENV, ""),
        (K.PROGRESS, ENV, ""),
        (K.ASSISTANT_TEXT, ENV, "final "),
        (K.ASSISTANT_TEXT, ENV, "answer"),
        (K.TURN_COMPLETED, ENV, "final answer"),
    ]


def test_tool_use_chain_in_order_with_the_prompt_first() -> None:
    p = ClaudeTranscriptParser()
    events = feed(p, P, *TOOL_TURN)
    assert turn_events(events)[-1] == (K.TURN_COMPLETED, ENV, "final answer")
    assert [k for k, _, _ in events].count(K.PROGRESS) == 2


def test_duplicated_lines_emit_each_turn_event_once() -> None:
    """Claude can write a line twice (same uuid and message, metadata may differ): the copy is
    progress, never a second prompt (which would abort the turn) or a second completion."""
    again = link(user(PROMPT), "p", None, promptId="other", version="2.1.198")
    p = ClaudeTranscriptParser()
    events = feed(p, E, A, E, P, A, again, E)
    assert turn_events(events) == IN_ORDER
    # after the turn, copies still belong to it; the next prompt is a fresh turn
    events = feed(p, P, A, E, link(user(wrap(ENV2, "next")), "p2", "e"))
    assert events[:3] == [(K.PROGRESS, ENV, "")] * 3
    assert events[3:] == [(K.PROMPT_RECORDED, ENV2, wrap(ENV2, "next"))]


def test_next_turns_after_an_out_of_order_first_flush() -> None:
    p = ClaudeTranscriptParser()
    first = feed(p, A, E, P)
    queued = wrap(ENV2, "two")
    second = feed(
        p,
        link(user(queued, source="queued"), "p2", "e"),
        link(assistant("echo: two", "m2"), "a2", "p2"),
        link(TURN_END, "e2", "a2"),
    )
    assert first == IN_ORDER
    assert turn_events(second) == [
        (K.PROMPT_RECORDED, ENV2, queued),
        (K.ASSISTANT_TEXT, ENV2, "echo: two"),
        (K.TURN_COMPLETED, ENV2, "echo: two"),
    ]


def test_parent_never_written_falls_back_to_file_order() -> None:
    """Claude sometimes names a parent it never writes: while a turn is open such a line joins
    it, and an end never waits, so the turn still completes from the transcript."""
    p = ClaudeTranscriptParser()
    events = feed(p, P, link(assistant("four"), "a", "ghost"), link(TURN_END, "e", "a"))
    assert events == IN_ORDER
    p = ClaudeTranscriptParser()
    assert feed(p, P, A, link(TURN_END, "e", "ghost")) == IN_ORDER


def test_held_chain_with_a_dangling_root_is_settled_by_the_end() -> None:
    """The assistant line came before the prompt and hangs from a parent never written: the end,
    arriving with the turn open, takes the held chain into the turn (in chain order)."""
    p = ClaudeTranscriptParser()
    assert feed(p, link(assistant("four"), "a", "ghost")) == []
    assert feed(p, P, E) == IN_ORDER and not p._held


def test_held_chain_is_settled_before_the_next_prompt() -> None:
    p = ClaudeTranscriptParser()
    feed(p, link(assistant("four"), "a", "ghost"), P, link(tool_use(), "t", "a"))
    events = feed(p, link(user(wrap(ENV2, "next")), "p2", "t"))
    assert events == [
        (K.ASSISTANT_TEXT, ENV, "four"),
        (K.PROGRESS, ENV, ""),
        (K.TURN_ABORTED, ENV, "four"),
        (K.PROMPT_RECORDED, ENV2, wrap(ENV2, "next")),
    ]


def test_api_error_written_before_the_prompt() -> None:
    err = json.dumps(
        base(
            "assistant",
            isApiErrorMessage=True,
            message={"id": "x", "role": "assistant", "content": [{"type": "text", "text": "529"}]},
        )
    )
    p = ClaudeTranscriptParser()
    events = feed(p, link(err, "x", "p"), link(TURN_END, "e", "x"), P)
    assert events == [
        (K.PROMPT_RECORDED, ENV, PROMPT),
        (K.API_ERROR, ENV, "529"),
        (K.PROGRESS, ENV, ""),
    ]


def test_interruption_marker_written_before_the_prompt() -> None:
    marker = link(user("[Request interrupted by user]"), "i", "p")
    p = ClaudeTranscriptParser()
    assert feed(p, marker, P) == [(K.PROMPT_RECORDED, ENV, PROMPT), (K.TURN_ABORTED, ENV, "")]


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines whose chain never completes (e.g. reading from mid-file) are capped, and so are the
    fingerprints kept of finished turns; a finished turn keeps no text."""
    monkeypatch.setattr(claude_module, "MAX_HELD", 4)
    monkeypatch.setattr(claude_module, "MAX_SEEN", 10)
    p = ClaudeTranscriptParser()
    assert feed(p, *(link(TURN_END, f"o{i}", f"missing{i}") for i in range(20))) == []
    assert len(p._held) == 4 and sum(map(len, p._waiting.values())) == 4
    for i in range(5):
        env = Envelope(i, 1, "local", "alice")
        lines = [
            link(user(wrap(env, "x")), f"p{i}", f"e{i - 1}"),
            link(assistant("y"), f"a{i}", f"p{i}"),
            link(TURN_END, f"e{i}", f"a{i}"),
        ]
        assert turn_events(feed(p, *lines))[-1] == (K.TURN_COMPLETED, env, "y")
    assert len(p._seen) == 10 and all(t is None or t.last_text == "" for _, t in p._seen.values())


def test_reset_forgets_held_lines() -> None:
    p = ClaudeTranscriptParser()
    feed(p, A, E)
    p.reset()
    assert feed(p, P) == [(K.PROMPT_RECORDED, ENV, PROMPT)]


def test_recovery_evidence_from_a_stop_hook_and_the_transcripts_prompt(tmp_path: Path) -> None:
    """A turn whose end reached the hook log but not (yet) the transcript still counts as
    completed after a crash: the transcript's prompt line names the Stop's envelope. A record
    a relay is still writing (no newline yet) is not a corrupt line."""
    from agentbridge.runtimes import ClaudeCodeProfile
    from agentbridge.supervisor.recovery import read_evidence

    transcript, hook_log = tmp_path / "t.jsonl", tmp_path / "hooks.jsonl"
    prompt = user(wrap(ENV, "hi"))
    transcript.write_text(prompt + "\n")
    stop = hook("Stop", prompt_id=json.loads(prompt)["promptId"], last_assistant_message="ok!")
    hook_log.write_text(json.dumps(stop["payload"]) + "\n" + '{"hook_event_name": "St')
    evidence = read_evidence(ClaudeCodeProfile(), transcript, hook_log)
    assert evidence.completed == {(42, 1): "ok!"}
    assert evidence.recorded == {(42, 1)} and evidence.corrupt_lines == 0
