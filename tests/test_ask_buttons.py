"""An ask's buttons are the choices the ``ask`` tool was given, and only those: the question's
own numbered lines never become buttons (a real ledger row, the real question text)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agentbridge.delivery.actions import ReplyAction, reply_actions
from agentbridge.ledger.sqlite import Ledger
from agentbridge.supervisor.ask_text import question_text

LISTY = "Which plan?\n  1) the old one\n  2) the new one\nor something else"


async def buttons(tmp_path: Path, question: str, choices: list[str], text: str = "") -> Any:
    """The short id of a real ask and the buttons of its question row (``text``: instead of
    the question's own wording)."""
    ledger = await Ledger.open(tmp_path / "ledger.db")
    try:
        ask = await ledger.open_ask("a", "web", "c1", question, choices, time.time() + 300)
        body = text.format(id=ask.short_id) or question_text(ask, 300)
        item = await ledger.enqueue_reply("web", "c1", body, f"ask:{ask.id}:question")
    finally:
        await ledger.close()
    return ask.short_id, reply_actions(item)


@pytest.mark.parametrize(
    ("question", "choices"),
    [
        (LISTY, ["keep", "rewrite"]),
        (LISTY, []),
        ("Pick:\n  1) a\n  2) b", ["x", "y", "z"]),  # the question's list right above ours
        ("Pick:\n  1) a\n  2) b", ["x"]),
        ("Go on?", ["yes"]),
    ],
)
async def test_only_the_given_choices_become_buttons(
    tmp_path: Path, question: str, choices: list[str]
) -> None:
    short_id, actions = await buttons(tmp_path, question, choices)
    assert actions == tuple(ReplyAction(c, f"answer {short_id} {c}") for c in choices)


@pytest.mark.parametrize(
    "text",
    [
        "Q (ask {id}): which?\n  2) b\n  3) c\n(pick a number or reply here within 5 min)",
        "Q (ask {id}): which?\n  1) a\n(reply here within 5 min)",
        "Q (ask {id}): which?\n  1) a\n  2) b",
    ],
)
async def test_text_not_written_as_an_asks_list_gives_no_buttons(tmp_path: Path, text: str) -> None:
    assert (await buttons(tmp_path, "which?", ["a"], text))[1] == ()
