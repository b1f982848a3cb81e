"""Discord JSON shapes the fake server (``testing.py``) sends: users, channels, answers.

Only what discord.py reads, with Discord's field names, so the real SDK parses them unmodified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 900_000_000_000_000_001
#: the application flags that say the Message Content intent is enabled in the portal
FLAG_MESSAGE_CONTENT = 1 << 19
FLAG_MESSAGE_CONTENT_LIMITED = 1 << 18
#: the gateway intent bit discord.py sets for ``message_content``
INTENT_MESSAGE_CONTENT = 1 << 15


@dataclass
class Sent:
    """One message the bot created through REST."""

    channel_id: int
    content: str
    nonce: str | None
    reply_to: int | None
    message_id: int
    files: list[tuple[str, bytes]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Callback:
    """One interaction callback the bot posted (``POST /interactions/{id}/{token}/callback``)."""

    interaction_id: int
    type: int  #: 4 message, 5 deferred message, 6 deferred update, 7 update message
    data: dict[str, Any]

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & 64)


def user(uid: int, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(uid),
        "username": f"user{uid % 10000}",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": bot,
    }


def member(uid: int) -> dict[str, Any]:
    return {
        "user": user(uid),
        "roles": [],
        "joined_at": "2026-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": "0",
    }


def channel(cid: int, guild_id: int | None, parent_id: int | None, peer: int) -> dict[str, Any]:
    """The channel object an interaction carries: a DM, a text channel or a thread."""
    if guild_id is None:
        return {"id": str(cid), "type": 1, "recipients": [user(peer)], "flags": 0}
    base = {"id": str(cid), "guild_id": str(guild_id), "name": f"c{cid % 1000}", "flags": 0}
    if parent_id is None:
        return {**base, "type": 0, "position": 0, "permission_overwrites": [], "nsfw": False}
    return {
        **base,
        "type": 11,
        "parent_id": str(parent_id),
        "owner_id": str(peer),
        "message_count": 0,
        "member_count": 1,
        "rate_limit_per_user": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2026-01-01T00:00:00+00:00",
            "locked": False,
        },
    }


def public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def as_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Exactly ``application/json``, as Discord sends it (discord.py compares the header)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def error(status: int, code: int, text: str) -> web.Response:
    return as_json({"message": text, "code": code}, status=status)
