"""Slack events → what the ledger stores: conversation, sender, text, key.

The idempotency key is ``"<channel>:<ts>"``: a message's ts is unique in its channel forever,
and it is the same whether the message arrives as a ``message`` event, an ``app_mention``
event (Slack sends both for one mention), a retried envelope or a ``conversations.history``
catch-up page. ``event_id`` and ``client_msg_id`` are kept in ``meta``.

Conversation: a DM is its channel id; a thread is ``"<channel>:<thread_ts>"``; a top-level
@mention in a channel opens a thread under itself (``reply_in_thread``), so the answer and any
follow-up in that thread are one conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentbridge_slack.files import SlackFile, file_refs
from agentbridge_slack.mrkdwn import from_slack

#: message subtypes that are edits, joins, bot posts…: never a prompt
_IGNORED_SUBTYPES = frozenset(
    {"message_changed", "message_deleted", "bot_message", "channel_join", "channel_leave"}
)


@dataclass(frozen=True)
class SlackMessage:
    """One inbound user message, parsed."""

    channel: str
    ts: str
    user: str | None
    team: str | None
    text: str
    thread_ts: str | None
    channel_type: str
    mentioned: bool
    meta: dict[str, Any] = field(default_factory=dict)
    files: tuple[SlackFile, ...] = ()
    #: "message", or "action" (a button click) / "command" (a slash command): those two are
    #: not in the channel's history, so they never move the catch-up cursor
    kind: str = "message"
    #: a click or command says its conversation and key itself (``interactive.py``)
    fixed_conversation: str | None = None
    fixed_key: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key (see the module doc)."""
        return self.fixed_key or f"{self.channel}:{self.ts}"

    def conversation(self, reply_in_thread: bool) -> str:
        """DM → channel; thread → channel:thread_ts; a channel mention → its own thread."""
        if self.fixed_conversation:
            return self.fixed_conversation
        if self.thread_ts:
            return f"{self.channel}:{self.thread_ts}"
        if self.channel_type != "im" and reply_in_thread:
            return f"{self.channel}:{self.ts}"
        return self.channel


def parse_event(
    event: dict[str, Any], bot_user: str | None, team: str | None = None, event_id: str = ""
) -> SlackMessage | None:
    """A user's message or mention, or None for everything else (our own posts, edits…)."""
    if event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("subtype") in _IGNORED_SUBTYPES or event.get("bot_id"):
        return None
    channel, ts, user = event.get("channel"), event.get("ts"), event.get("user")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return None
    if bot_user is not None and user == bot_user:
        return None
    raw = event.get("text") if isinstance(event.get("text"), str) else ""
    mention = f"<@{bot_user}>" if bot_user else None
    mentioned = event.get("type") == "app_mention" or bool(mention and mention in str(raw))
    text = str(raw)
    if mention:
        text = re.sub(rf"\s*{re.escape(mention)}\s*", " ", text).strip()
    channel_type = str(
        event.get("channel_type") or ("im" if channel.startswith("D") else "channel")
    )
    thread_ts = event.get("thread_ts")
    meta: dict[str, Any] = {"channel": channel, "ts": ts, "channel_type": channel_type}
    if event_id:
        meta["event_id"] = event_id
    if isinstance(event.get("client_msg_id"), str):
        meta["client_msg_id"] = event["client_msg_id"]
    if isinstance(thread_ts, str) and thread_ts != ts:
        meta["thread_ts"] = thread_ts
    else:
        thread_ts = None
    return SlackMessage(
        channel=channel,
        ts=ts,
        user=user if isinstance(user, str) else None,
        team=str(event.get("team") or team or "") or None,
        text=from_slack(text),
        thread_ts=thread_ts,
        channel_type=channel_type,
        mentioned=mentioned,
        meta=meta,
        files=file_refs(event),
    )


def wanted(msg: SlackMessage, known_threads: set[str]) -> bool:
    """DMs always; in channels only mentions and replies in threads we already answer in."""
    if msg.channel_type == "im" or msg.kind != "message":
        return True
    return msg.mentioned or (
        msg.thread_ts is not None and f"{msg.channel}:{msg.thread_ts}" in known_threads
    )


def split_conversation(conversation: str) -> tuple[str, str | None]:
    """``"C1:1700.1"`` → ("C1", "1700.1"); ``"D1"`` → ("D1", None)."""
    channel, _, thread = conversation.partition(":")
    return channel, thread or None
