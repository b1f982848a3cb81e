"""Buttons a reply may carry: the Allow / Deny choices of a permission request, and the
choices of an agent's question (MCP ``ask``, keyed ``ask:<row id>:question``; a click sends
``"answer <id> <choice>"``, which ``supervisor/asks.py`` takes like a typed answer).

Like a file (``attachments.py``), a choice needs no outbox column: the permission relay keys
its question ``permission:<row id>:ask`` and writes the answers it takes into the text as
``"yes abc12"``. A channel with buttons calls ``reply_actions(item)`` and shows one button per
action; a click is ingested as the action's ``answer`` text from the clicking user in that
conversation, so the relay checks sender, conversation and first-answer-wins exactly as for a
typed answer. Channels without buttons send the text, which already says what to type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentbridge.ledger.store import ChannelLedger, NotFound, PermissionRequest
from agentbridge.models import Message, OutboxItem

PERMISSION_KEY_PREFIX = "permission:"
_ASK_SUFFIX = ":ask"
_CHOICE = re.compile(r'"((?:yes|no|always) [a-z0-9]{5})"')
_ANSWER = re.compile(r"(?:yes|no|always) ([a-z0-9]{5})")
ASK_KEY_PREFIX, _QUESTION_SUFFIX = "ask:", ":question"
_ASK_ID = re.compile(r"\(ask ([a-z0-9]{5})\)")
_ASK_CHOICE = re.compile(r"  (\d+)\) (.+)")
#: the last line of a question with choices begins ``(`` + this (``supervisor/ask_text.py``)
ASK_PICK_HINT = "pick a number or reply"
_LABELS = {"yes": "Allow", "always": "Allow for this session", "no": "Deny"}


@dataclass(frozen=True)
class ReplyAction:
    """One button: what it shows and the text a click sends back through ingest."""

    label: str
    answer: str  #: e.g. ``"yes abc12"`` — ingested as if the user typed it


def choices_text(short_id: str, can_always: bool) -> str:
    """The answers a permission question offers, quoted the way ``reply_actions`` reads them."""
    words = ("yes", "always", "no") if can_always else ("yes", "no")
    quoted = [f'"{word} {short_id}"' for word in words]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def reply_actions(item: OutboxItem) -> tuple[ReplyAction, ...]:
    """The buttons of an outbox item: the choices of a permission question or of an ask."""
    key = item.idem_key
    if key.startswith(ASK_KEY_PREFIX) and key.endswith(_QUESTION_SUFFIX):
        found = _ASK_ID.search(item.text)
        if found is None:
            return ()
        return tuple(
            ReplyAction(label=choice, answer=f"answer {found.group(1)} {choice}")
            for choice in ask_choices(item.text)
        )
    if not (key.startswith(PERMISSION_KEY_PREFIX) and key.endswith(_ASK_SUFFIX)):
        return ()
    return tuple(
        ReplyAction(label=_LABELS[answer.split(" ", 1)[0]], answer=answer)
        for answer in _CHOICE.findall(item.text)
    )


def ask_choices(text: str) -> list[str]:
    """The choices an ask's text lists: the numbered lines just above its last line, counted
    back to ``1)``, only when that line says there is a number to pick. A question's own
    ``  1) x`` lines (above those, or in a question without choices) are no buttons."""
    lines = text.splitlines()
    if len(lines) < 2 or not lines[-1].startswith(f"({ASK_PICK_HINT}"):
        return []
    listed: list[tuple[int, str]] = []
    for line in reversed(lines[:-1]):
        match = _ASK_CHOICE.fullmatch(line)
        if match is None:
            break
        listed.append((int(match.group(1)), match.group(2)))
        if listed[-1][0] == 1:
            break
    if [n for n, _ in listed] != list(range(len(listed), 0, -1)):
        return []  # not the list ``question_text`` writes
    return [choice for _, choice in reversed(listed)]


async def click_answers_here(
    ledger: ChannelLedger, channel: str, conversation: str, answer: str
) -> bool:
    """Does a click's ``answer`` name a permission request asked in this conversation?

    A button is only ever shown where its question was asked, so a click whose data names
    no request, or another conversation's, is forged or stale: a channel acknowledges it and
    drops it. Ingested, the relay would not take it and it would reach the agent as text.
    """
    match = _ANSWER.fullmatch(answer)
    found = None if match is None else await asked_during(ledger, match.group(1))
    if found is None:
        return False
    message = found[1]
    return (message.channel, message.conversation) == (channel, conversation)


async def asked_during(
    ledger: ChannelLedger, short_id: str
) -> tuple[PermissionRequest, Message] | None:
    """The permission request ``short_id`` names and the message it was asked during, whose
    conversation alone may answer it; None: no such request, none with a message, or the
    message is gone (pruned). A click and ``agentbridge send`` both ask this."""
    req = await ledger.get_permission(short_id)
    if req is None or req.message_id is None:
        return None
    try:
        return req, await ledger.get(req.message_id)
    except NotFound:
        return None
