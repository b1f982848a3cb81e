"""Buttons of a permission question: what goes out as message components and what comes back.

Each ``ReplyAction`` becomes a button whose ``custom_id`` carries the action's ``answer`` text
(``"yes abc12"``): a click comes back over the gateway as INTERACTION_CREATE (type 3) and is
ingested as that text from the clicking user, so the core relay checks sender, conversation
and first-answer-wins as for a typed answer. The view is stopped before it is sent: discord.py
then serialises it without keeping it in its view store (the click is ours to handle, through
``on_interaction``, not a callback that would be lost with the process).
"""

from __future__ import annotations

import discord
from agentbridge.delivery.actions import ReplyAction

#: custom_id prefix of an answer button (custom ids may be 100 characters)
ANSWER_PREFIX = "agentbridge:answer:"
_STYLES = {
    "yes": discord.ButtonStyle.success,
    "always": discord.ButtonStyle.primary,
    "no": discord.ButtonStyle.danger,
}


def answer_view(actions: tuple[ReplyAction, ...]) -> discord.ui.View:
    """One row of buttons, one per action (needs a running event loop, as every View)."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        style = _STYLES.get(action.answer.split(" ", 1)[0], discord.ButtonStyle.secondary)
        view.add_item(
            discord.ui.Button(
                label=action.label[:80],
                style=style,
                custom_id=(ANSWER_PREFIX + action.answer)[:100],
            )
        )
    view.stop()  # serialised, never stored: the click comes back through on_interaction
    return view


def answer_of(custom_id: object) -> str | None:
    """The answer text a button carries, or None for a component that is not ours."""
    if not isinstance(custom_id, str) or not custom_id.startswith(ANSWER_PREFIX):
        return None
    answer = custom_id[len(ANSWER_PREFIX) :].strip()
    return answer or None
