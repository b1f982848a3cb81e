"""Ledger records → the JSON the page renders, with receipts derived in one place.

The page never guesses a receipt: the server maps ledger states and audit events to the
glossary's receipts (queued, injected, working, replied, failed, waiting, interrupted) here.

When is the reply shown? When the message is completed and its outbox row has left
``pending``/``sending``: normally ``sent`` (the receipt is then ``replied``, exactly as on any
other channel); a ``failed``/``unknown``/``expired`` row still shows the text (it is in the
ledger, the user should read it) with a ``failed`` receipt saying the delivery did not finish.
A completed message with no outbox row (nothing to deliver) shows ``message.reply`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentbridge.channels.web.downloads import download_url
from agentbridge.delivery.attachments import file_ref
from agentbridge.kinds import ReceiptKind
from agentbridge.models import Event, Message, OutboxItem
from agentbridge.states import MessageState, OutboxState

RECEIPTS = frozenset(ReceiptKind)

_UNSETTLED = frozenset({OutboxState.PENDING, OutboxState.SENDING})
_UNDELIVERED = frozenset({OutboxState.FAILED, OutboxState.UNKNOWN, OutboxState.EXPIRED})


def message_receipt(message: Message, replies: Sequence[OutboxItem]) -> tuple[str, str]:
    """The current receipt ``(status, detail)`` of a message."""
    state = message.state
    if state == MessageState.QUEUED:
        return "queued", f"attempt {message.attempt}" if message.attempt > 1 else ""
    if state == MessageState.CLAIMED:
        return "queued", "claimed by the agent session"
    if state == MessageState.SUBMITTED:
        return "injected", ""
    if state == MessageState.ACCEPTED:
        return "working", ""
    if state == MessageState.FAILED:
        return "failed", message.reason or ""
    if state == MessageState.QUARANTINED:
        return "waiting", f"quarantined: {message.reason or 'waits for a human'}"
    if state == MessageState.INTERRUPTED:
        return "interrupted", message.reason or ""
    # completed
    if any(r.state in _UNSETTLED for r in replies):
        return "working", "reply captured, being delivered"
    undelivered = [r for r in replies if r.state in _UNDELIVERED]
    if undelivered:
        last = undelivered[-1]
        return "failed", f"reply {last.state}: {last.last_error or 'not delivered'}"
    return "replied", ""


def reply_visible(message: Message, replies: Sequence[OutboxItem]) -> bool:
    """See the module docstring: completed, and no reply row still on its way."""
    return message.state == MessageState.COMPLETED and not any(
        r.state in _UNSETTLED for r in replies
    )


def message_view(message: Message, replies: Sequence[OutboxItem]) -> dict[str, Any]:
    """One message as the page shows it."""
    status, detail = message_receipt(message, replies)
    return {
        "id": message.id,
        "channel": message.channel,
        "conversation": message.conversation,
        "sender": message.sender,
        "agent": message.agent,
        "text": message.text,
        "key": message.platform_id,
        "state": str(message.state),
        "status": status,
        "status_detail": detail,
        "attempt": message.attempt,
        "reason": message.reason,
        "reply": message.reply if reply_visible(message, replies) else None,
        "reply_states": [str(r.state) for r in replies],
        "files": files_view(replies),
        "lease_owner": message.lease_owner,
        "lease_expires_at": message.lease_expires_at,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
    }


def files_view(replies: Sequence[OutboxItem]) -> list[dict[str, Any]]:
    """The files the agent sent with this message: a link once sent, the reason if not."""
    out = []
    for item in replies:
        ref = file_ref(item)
        if ref is None:
            continue
        sent = item.state == OutboxState.SENT
        out.append(
            {
                "outbox_id": item.id,
                "name": ref.path.name,
                "size": ref.size,
                "caption": ref.caption,
                "state": str(item.state),
                "url": download_url(item.id) if sent else None,
                "error": item.last_error if item.state in _UNDELIVERED else None,
            }
        )
    return out


def event_receipt(event: Event) -> str | None:
    """The receipt an audit event stands for, or None (claims, refusals, notes…)."""
    if event.kind == "transition":
        return {
            "queued": "queued",
            "submitted": "injected",
            "accepted": "working",
            "failed": "failed",
            "quarantined": "waiting",
            "interrupted": "interrupted",
        }.get(event.to_state or "")
    if event.kind == "outbox":
        if event.to_state == OutboxState.SENT:
            return "replied"
        if event.to_state in _UNDELIVERED:
            return "failed"
        return None
    if event.kind == "receipt":  # a receipt someone recorded with ``ledger.note``
        word = event.detail.split(":", 1)[0].split(" ", 1)[0].strip()
        return word if word in RECEIPTS else None
    return None


def event_view(event: Event) -> dict[str, Any]:
    """One audit event as the page shows it (timeline chip, activity line)."""
    return {
        "id": event.id,
        "message_id": event.message_id,
        "outbox_id": event.outbox_id,
        "at": event.at,
        "actor": event.actor,
        "kind": event.kind,
        "from": event.from_state,
        "to": event.to_state,
        "attempt": event.attempt,
        "detail": event.detail,
        "receipt": event_receipt(event),
    }


def outbox_view(item: OutboxItem) -> dict[str, Any]:
    """One outbox row for the dashboard (text cut short: it is a list, not a reader)."""
    return {
        "id": item.id,
        "message_id": item.message_id,
        "channel": item.channel,
        "conversation": item.conversation,
        "state": str(item.state),
        "attempts": item.attempts,
        "last_error": item.last_error,
        "text": item.text[:300],
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "scheduled_at": item.scheduled_at,
    }
