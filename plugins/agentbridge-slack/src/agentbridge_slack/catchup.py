"""Reading Slack's history: messages missed while the bridge was down, and our own replies.

Catch-up covers the conversations the bot is a member of (``users.conversations``) that it has
seen before (a cursor entry): a channel never seen has nothing to catch up to. Thread replies
are read for parents whose ``latest_reply`` is newer than the cursor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack.cursor import Cursor
from agentbridge_slack.inbound import SlackMessage, parse_event

TYPES = "im,mpim,public_channel,private_channel"


async def _member_of(web: AsyncWebClient) -> list[tuple[str, str]]:
    """(channel id, channel_type) of every conversation the bot is in."""
    out: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        page = await web.users_conversations(types=TYPES, limit=200, cursor=cursor)
        for conv in page.get("channels") or []:
            kind = "im" if conv.get("is_im") else "channel"
            out.append((str(conv["id"]), kind))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return out


async def _pages(web: AsyncWebClient, method: str, **args: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        call = web.conversations_history if method == "history" else web.conversations_replies
        page = await call(limit=200, cursor=cursor, **args)
        messages.extend(m for m in page.get("messages") or [] if isinstance(m, dict))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor or not page.get("has_more", True):
            return messages


async def missed(
    web: AsyncWebClient, cursor: Cursor, bot_user: str | None
) -> AsyncIterator[SlackMessage]:
    """Every message after the cursor, oldest first, per conversation."""
    for channel, kind in await _member_of(web):
        oldest = cursor.get(channel)
        if oldest is None:
            continue
        found: dict[str, dict[str, Any]] = {}
        for m in await _pages(web, "history", channel=channel, oldest=oldest):
            found[str(m.get("ts"))] = m
            latest = m.get("latest_reply")
            if isinstance(latest, str) and float(latest) > float(oldest):
                thread = await _pages(web, "replies", channel=channel, ts=m["ts"], oldest=oldest)
                found.update({str(r.get("ts")): r for r in thread})
        for ts in sorted(found, key=float):
            if float(ts) <= float(oldest):
                continue
            event = dict(found[ts], channel=channel, channel_type=kind)
            event.setdefault("type", "message")
            msg = parse_event(event, bot_user)
            if msg is not None:
                yield msg


async def find_own(
    web: AsyncWebClient,
    channel: str,
    thread: str | None,
    since: float,
    text: str,
    bot_user: str | None,
    file_name: str | None = None,
) -> str | None:
    """The ts of a message by us with exactly ``text`` posted after ``since`` (for a file:
    the id of a file of that name one carries, what ``deliver_file`` returns), or None."""
    if thread is not None:
        messages = await _pages(web, "replies", channel=channel, ts=thread, oldest=f"{since:.6f}")
    else:
        messages = await _pages(web, "history", channel=channel, oldest=f"{since:.6f}")
    for m in messages:
        ours = m.get("bot_id") is not None or (bot_user is not None and m.get("user") == bot_user)
        if not ours or float(m.get("ts", 0)) < since:
            continue
        if file_name is None:
            if m.get("text") == text:
                return str(m["ts"])
            continue
        for f in m.get("files") or []:
            if isinstance(f, dict) and f.get("name") == file_name:
                return str(f.get("id") or m["ts"])
    return None
