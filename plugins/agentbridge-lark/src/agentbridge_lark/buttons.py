"""Buttons on Lark: a permission question as an interactive card, a click as a typed answer.

A reply part that carries actions (``agentbridge.delivery.actions.reply_actions``) goes out
as a card: the text in a ``markdown`` element, one button per action. Each button's
``value`` holds the answer text and the conversation the card belongs to; Lark returns the
value untouched in the ``card.action.trigger`` callback (over the same long connection), so
a click, even after a restart, is ingested as that answer from the clicking user in that
conversation — the core relay then checks sender, conversation and first-answer-wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agentbridge.delivery.actions import ReplyAction

from agentbridge_lark.inbound import as_dict
from agentbridge_lark.settings import LarkSettings

#: the callback's event type (subscribed under "Callbacks" in the developer console)
CARD_ACTION = "card.action.trigger"
_STYLES = {"yes": "primary", "always": "default", "no": "danger"}


def card_for(text: str, actions: tuple[ReplyAction, ...], conversation: str) -> str:
    """The ``content`` of an ``interactive`` message: ``text`` and one button per action."""
    buttons = [
        {
            "tag": "button",
            "text": {"tag": "plain_text", "content": action.label},
            "type": _STYLES.get(action.answer.split(" ", 1)[0], "default"),
            "value": {"answer": action.answer, "conversation": conversation},
        }
        for action in actions
    ]
    card = {
        "config": {"wide_screen_mode": True},
        "elements": [{"tag": "markdown", "content": text}, {"tag": "action", "actions": buttons}],
    }
    return json.dumps(card)


@dataclass(frozen=True)
class Click:
    """One button click, reduced."""

    event_id: str
    open_id: str | None
    user_id: str | None
    tenant: str | None
    chat_id: str
    card_id: str
    answer: str
    conversation: str

    def allowed(self, settings: LarkSettings) -> bool:
        """The clicker passes the same allowlists a message's sender must."""
        chat_ok = not settings.allowed_chats or self.chat_id in settings.allowed_chats
        tenant_ok = not settings.allowed_tenants or self.tenant in settings.allowed_tenants
        return chat_ok and tenant_ok and bool({self.open_id, self.user_id} & settings.allowed_users)

    @property
    def key(self) -> str:
        """The ingest key: a callback pushed again has the same event id; two clicks do not."""
        return f"card:{self.event_id}"


def from_click(payload: dict[str, Any]) -> Click | None:
    """A ``card.action.trigger`` callback carrying one of our buttons, else None."""
    header = as_dict(payload.get("header"))
    event = as_dict(payload.get("event"))
    operator, context = as_dict(event.get("operator")), as_dict(event.get("context"))
    value = as_dict(as_dict(event.get("action")).get("value"))
    answer, conversation = value.get("answer"), value.get("conversation")
    chat = context.get("open_chat_id")
    if not isinstance(answer, str) or not isinstance(conversation, str) or not chat:
        return None
    if not conversation.startswith(f"{chat}"):
        return None  # a button that claims another chat than the card's own
    return Click(
        event_id=str(header.get("event_id") or ""),
        open_id=operator.get("open_id"),
        user_id=operator.get("user_id"),
        tenant=operator.get("tenant_key") or header.get("tenant_key"),
        chat_id=str(chat),
        card_id=str(context.get("open_message_id") or ""),
        answer=answer,
        conversation=conversation,
    )
