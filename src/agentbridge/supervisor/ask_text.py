"""What the chat sees of an MCP ask, and what it answers: the wording beside the relay.

``question_text`` writes the numbered choices ``delivery/actions.py`` reads back as buttons;
``resolve`` maps an answer to a choice; ``not_a_row`` is what a channel's ingest returns for an
answer no message asked for (the ``asks`` row is the record).
"""

from __future__ import annotations

from agentbridge.delivery.actions import ASK_PICK_HINT
from agentbridge.ledger.store import Ask
from agentbridge.models import Message
from agentbridge.states import MessageState


def question_text(ask: Ask, timeout: float) -> str:
    """What the chat shows; ``delivery/actions.py`` reads the numbered choices back."""
    lines = [f"Question from {ask.agent} (ask {ask.short_id}): {ask.question}"]
    lines += [f"  {n}) {choice}" for n, choice in enumerate(ask.choices, 1)]
    how = ASK_PICK_HINT if ask.choices else "reply"
    lines.append(
        f"({how} here within {span(timeout)}; your next message is the answer,"
        f' or type "answer {ask.short_id} …")'
    )
    return "\n".join(lines)


def span(seconds: float) -> str:
    """``90 s`` / ``5 min``: how long, the way a person reads it."""
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def resolve(ask: Ask, text: str) -> str:
    """The answer as recorded: a choice by its number or text, else the text as given."""
    given = text.strip()
    if given.isdigit() and 1 <= int(given) <= len(ask.choices):
        return ask.choices[int(given) - 1]
    for choice in ask.choices:
        if choice.casefold() == given.casefold():
            return choice
    return given


def not_a_row(
    channel: str, conversation: str, sender: str, text: str, agent: str, now: float
) -> Message:
    """An ingest result for an answer with no asking message: id 0, never a ledger row."""
    return Message(
        id=0,
        channel=channel,
        conversation=conversation,
        sender=sender,
        platform_id=None,
        text=text,
        agent=agent,
        priority=0,
        state=MessageState.COMPLETED,
        attempt=1,
        fence=0,
        lease_owner=None,
        lease_expires_at=None,
        heartbeat_at=None,
        reply=None,
        reason="the answer to an ask",
        meta={},
        created_at=now,
        updated_at=now,
    )
