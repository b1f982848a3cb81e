"""The runtimes' words for their faults: what an API-error record's text names, and how long
a printed reset time is away. The dispatcher acts on these when no error screen was read."""

from __future__ import annotations

import datetime as dt

import pytest

from agentbridge.plugin.protocols import ScreenKind
from agentbridge.runtimes.claude.profile import ClaudeCodeProfile
from agentbridge.runtimes.codex.profile import CodexProfile
from agentbridge.runtimes.demo import DemoProfile
from agentbridge.runtimes.errors import GENERIC, error_text_of, seconds_until_clock
from agentbridge.runtimes.generic import GenericProfile

NOON = dt.datetime(2026, 12, 7, 12, 0)
RATE, CONTEXT, API = ScreenKind.RATE_LIMITED, ScreenKind.CONTEXT_FULL, ScreenKind.API_ERROR


def test_each_runtime_has_its_words_and_others_get_the_plain_ones() -> None:
    claude, codex = error_text_of(ClaudeCodeProfile()), error_text_of(CodexProfile())
    assert claude is not codex and GENERIC not in (claude, codex)
    assert error_text_of(DemoProfile()) is claude  # the fake agent draws Claude's screens
    assert error_text_of(GenericProfile()) is GENERIC
    assert error_text_of(object()) is GENERIC  # a profile written before ``error_text``


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You've hit your limit · resets 3:45pm (UTC)", (RATE, "3:45pm")),
        ('API Error: 429 {"error":{"type":"rate_limit_error","message":"mock"}}', (RATE, None)),
        ("API Error: Request rejected (429) · slow down", (RATE, None)),
        ("rate_limit", (RATE, None)),  # a StopFailure hook's error field
        ("Prompt is too long", (CONTEXT, None)),
        ("Context limit reached · /compact or /clear to continue", (CONTEXT, None)),
        ("API Error: 500 Internal server error", (API, None)),
        ("API Error: Repeated 529 Overloaded errors", (API, None)),
    ],
)
def test_claude_error_text(text: str, expected: tuple[ScreenKind, str | None]) -> None:
    assert ClaudeCodeProfile().error_text.classify(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "You've hit your usage limit. Upgrade to Pro, or try again at 3:45 PM.",
            (RATE, "3:45 PM"),
        ),
        (
            "You've hit your usage limit. Try again in 2 hours 5 minutes.",
            (RATE, "2 hours 5 minutes"),
        ),
        ("exceeded retry limit, last status: 429 Too Many Requests", (RATE, None)),
        ("Codex ran out of room in the model's context window.", (CONTEXT, None)),
        ("context_length_exceeded", (CONTEXT, None)),
        ("stream disconnected before completion: 500 Internal Server Error", (API, None)),
    ],
)
def test_codex_error_text(text: str, expected: tuple[ScreenKind, str | None]) -> None:
    assert CodexProfile().error_text.classify(text) == expected


def test_plain_words() -> None:
    assert GENERIC.classify("rate limit exceeded") == (RATE, None)
    assert GENERIC.classify("usage limit reached, resets at 4pm today") == (RATE, "4pm today")
    assert GENERIC.classify("the context is full") == (CONTEXT, None)
    assert GENERIC.classify("something broke") == (API, None)


def test_reset_times() -> None:
    assert seconds_until_clock("3:45pm", NOON) == 3 * 3600 + 45 * 60
    assert seconds_until_clock("11am", NOON) == 23 * 3600  # already past: tomorrow
    assert seconds_until_clock("12:00 PM", NOON) == 0.0  # this minute: now
    # read a little late (the minute rolled over, a slow machine): due now, not in 24 hours
    assert seconds_until_clock("11:57am", NOON) == 0.0
    assert seconds_until_clock("11:50am", NOON) == 23 * 3600 + 50 * 60
    assert seconds_until_clock("soon", NOON) is None
    assert seconds_until_clock(None, NOON) is None
    codex = CodexProfile().error_text
    assert codex.seconds_until_reset("2 hours 5 minutes") == 2 * 3600 + 5 * 60
    assert codex.seconds_until_reset("1 day") == 86400
    assert CodexProfile.error_text.seconds_until_reset("3:45 PM", NOON) == 3 * 3600 + 45 * 60
    assert ClaudeCodeProfile().error_text.seconds_until_reset("3:45pm", NOON) == 13500
