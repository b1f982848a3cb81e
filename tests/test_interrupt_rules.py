"""The one screen rule for an interrupt (``interrupts.prompt_put_back``), on real CLI screens.

Claude Code 2.1.197 records nothing on an Esc before the answer's first token: it puts the
prompt back into its box and goes idle. The rule must fire on exactly that and on nothing a
normal turn shows (the captured screens under ``tests/data/screens``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentbridge.models import Message
from agentbridge.plugin.protocols import ScreenKind, ScreenState
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile
from agentbridge.states import MessageState
from agentbridge.supervisor.interrupts import prompt_put_back

SCREENS = Path(__file__).parent / "data" / "screens"
BORDER = "─" * 60


def message(mid: int = 7, attempt: int = 1) -> Message:
    return Message(
        id=mid, channel="local", conversation="c", sender="alice", platform_id=None,
        text="think long", agent="a", priority=0, state=MessageState.ACCEPTED, attempt=attempt,
        fence=1, lease_owner="t", lease_expires_at=None, heartbeat_at=None, reply=None,
        reason=None, meta={}, created_at=0.0, updated_at=0.0,
    )  # fmt: skip


def claude(name: str) -> ScreenState:
    return ClaudeCodeProfile().screen_state((SCREENS / name).read_text())


def boxed(text: str) -> ScreenState:
    """A Claude screen whose input box holds ``text``."""
    lines = text.split("\n")
    box = "\n".join(["❯\u00a0" + lines[0], *("  " + line for line in lines[1:])])
    return ClaudeCodeProfile().screen_state(f"● earlier answer\n{BORDER}\n{box}\n{BORDER}\n")


def test_the_real_screen_after_esc_shows_the_prompt_back_in_the_box() -> None:
    state = claude("claude_interrupted_prompt_back.txt")
    assert state.kind is ScreenKind.READY
    assert state.input_text is not None
    assert state.input_text.startswith("[agentbridge message=7 attempt=1 channel=local")
    assert prompt_put_back(message(7, 1), True, "idle", state)
    assert prompt_put_back(message(7, 1), True, None, state)  # no status file: the screen


@pytest.mark.parametrize(
    ("msg", "accepted", "status"),
    [
        (message(7, 1), False, "idle"),  # the agent never recorded it: not its turn yet
        (message(7, 1), True, "busy"),  # still working (or a new turn started)
        (message(7, 1), True, "waiting"),
        (message(7, 2), True, "idle"),  # another attempt of the message
        (message(70, 1), True, "idle"),  # another message whose id starts alike
        (message(17, 1), True, "idle"),
    ],
)
def test_the_rule_needs_acceptance_idle_and_this_very_attempt(
    msg: Message, accepted: bool, status: str
) -> None:
    assert not prompt_put_back(msg, accepted, status, claude("claude_interrupted_prompt_back.txt"))


@pytest.mark.parametrize(
    "text",
    [
        "[agentbridge message=7 attempt=12 channel=local sender=alice]\nx",
        "see [agentbridge message=7 attempt=1 channel=local sender=alice] above",  # a quote
        "a human's draft",
        "",
    ],
)
def test_a_box_that_does_not_start_with_this_envelope_is_no_interrupt(text: str) -> None:
    state = boxed(text)
    assert state.kind is ScreenKind.READY
    assert not prompt_put_back(message(7, 1), True, "idle", state)


def test_a_box_wrapping_the_envelope_over_two_rows_still_counts() -> None:
    state = boxed("[agentbridge message=7 attempt=1\nchannel=local sender=alice]\nthink long")
    assert prompt_put_back(message(7, 1), True, "idle", state)


@pytest.mark.parametrize(
    "name",
    [
        "claude_ready.txt",
        "claude_busy_retrying.txt",
        "claude_error_429.txt",
        "claude_error_500.txt",
        "claude_permission.txt",
    ],
)
def test_no_screen_of_a_normal_or_failed_turn_fires_the_rule(name: str) -> None:
    """Not even for the messages whose prompts these screens echo above the box."""
    echoed = {
        int(m) for m in re.findall(r"agentbridge message=(\d+)", (SCREENS / name).read_text())
    }
    for mid in echoed | {1, 7}:
        assert not prompt_put_back(message(mid, 1), True, "idle", claude(name))


def test_codex_says_conversation_interrupted_and_that_is_no_error() -> None:
    """Read as an API error it was requeued (attempt 2) and kept the agent from idling."""
    state = CodexProfile().screen_state((SCREENS / "codex_interrupted.txt").read_text())
    assert state.kind is ScreenKind.READY and state.input_text == ""
    assert not prompt_put_back(message(7, 1), True, None, state)  # the box is empty
    errored = (SCREENS / "codex_api_error_500.txt").read_text()
    assert CodexProfile().screen_state(errored).kind is ScreenKind.API_ERROR


def test_codex_rollout_of_an_interrupted_turn_read_from_its_start() -> None:
    """Real Codex 0.169.0 rollout: message 7 interrupted by Esc, then message 8 answered.

    Read from its first line, the ``turn_aborted`` carries message 7's envelope; read from after
    the prompt (how the bridge tailed a rollout it found late) it carries none and matched no
    message: why a transcript first seen after launch is now read from its start.
    """
    from agentbridge.events import AgentEventKind as K
    from agentbridge.runtimes.codex.transcript import CodexTranscriptParser

    lines = (Path(__file__).parent / "data" / "codex" / "interrupted_then_next.jsonl").read_text()
    rows = lines.splitlines()
    parser = CodexTranscriptParser()
    events = [e for line in rows for e in parser.feed(line)]
    got = [
        (e.kind, e.envelope.message_id if e.envelope else None)
        for e in events
        if e.kind in (K.PROMPT_RECORDED, K.TURN_ABORTED, K.TURN_COMPLETED)
    ]
    assert got == [
        (K.PROMPT_RECORDED, 7),
        (K.TURN_ABORTED, 7),
        (K.PROMPT_RECORDED, 8),
        (K.TURN_COMPLETED, 8),
    ]
    assert parser.corrupt_lines == 0
    prompt_at = next(i for i, row in enumerate(rows) if "message=7 attempt=1" in row)
    late = CodexTranscriptParser()
    tail = [e for line in rows[prompt_at + 2 :] for e in late.feed(line)]
    aborted = [e for e in tail if e.kind is K.TURN_ABORTED]
    assert len(aborted) == 1 and aborted[0].envelope is None
