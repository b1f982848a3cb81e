"""Discord messages → the few fields the bridge ingests, and whether they are for us.

Parsing never raises: a message we cannot read would otherwise hold its channel's cursor
back forever and block every message behind it. Only ledger failures may do that.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import discord

from agentbridge_discord.files import FileLink, links
from agentbridge_discord.settings import DiscordSettings


class Verdict(enum.StrEnum):
    """What the channel does with one Discord message."""

    INGEST = "ingest"  # an allowed sender wrote to the bot: into the ledger
    IGNORE = "ignore"  # not addressed to the bot (a bot's message, no mention, a system event)
    REFUSE = "refuse"  # addressed to the bot by someone the allowlists do not admit
    EMPTY = "empty"  # an allowed sender, but no text reached us (see the content intent)


@dataclass(frozen=True)
class Inbound:
    """One Discord message, reduced."""

    message_id: int
    channel_id: int
    guild_id: int | None  # None: a DM
    parent_id: int | None  # the parent channel when ``channel_id`` is a thread
    author_id: int
    author_is_bot: bool
    author_name: str
    content: str
    mentions: frozenset[int]
    attachments: tuple[FileLink, ...]
    system: bool

    @property
    def key(self) -> str:
        """The ingest idempotency key: Discord message ids (snowflakes) are globally unique."""
        return str(self.message_id)

    @property
    def meta(self) -> dict[str, Any]:
        """What the ledger keeps next to the text (shown by ``agentbridge messages``)."""
        return {
            "message_id": str(self.message_id),
            "channel_id": str(self.channel_id),
            "guild_id": None if self.guild_id is None else str(self.guild_id),
            "thread_parent_id": None if self.parent_id is None else str(self.parent_id),
            "username": self.author_name,
        }


def from_message(
    msg: discord.Message, guild_id: int | None = None, parent_id: int | None = None
) -> Inbound:
    """Reduce a discord.py ``Message`` (live or read from history).

    History payloads carry no guild id, so the caller passes what it remembered of the channel.
    """
    channel = msg.channel
    if guild_id is None:
        guild = getattr(msg, "guild", None)
        guild_id = getattr(guild, "id", None) or getattr(channel, "guild_id", None)
    if parent_id is None and isinstance(channel, discord.Thread):
        parent_id = channel.parent_id
    return Inbound(
        message_id=msg.id,
        channel_id=channel.id,
        guild_id=guild_id,
        parent_id=parent_id,
        author_id=msg.author.id,
        author_is_bot=bool(msg.author.bot),
        author_name=str(msg.author.name),
        content=_clean(msg.content),
        mentions=frozenset(msg.raw_mentions) | {user.id for user in msg.mentions},
        attachments=links(msg),
        system=msg.type not in (discord.MessageType.default, discord.MessageType.reply),
    )


def _clean(text: Any) -> str:
    """A str SQLite can store: lone surrogates (valid JSON, invalid UTF-8) become '?'."""
    if not isinstance(text, str):
        return ""
    return text.encode("utf-8", "replace").decode("utf-8")


def strip_mention(content: str, bot_id: int) -> str:
    """The text without the bot's own ``<@id>`` / ``<@!id>`` mention(s)."""
    return re.sub(rf"<@!?{bot_id}>", "", content).strip()


def admits(
    settings: DiscordSettings,
    user_id: int,
    channel_id: int,
    guild_id: int | None,
    parent_id: int | None = None,
) -> bool:
    """The allowlists: user, and for guild traffic the guild and channel (or thread parent).

    Shared by messages and interactions (a button click or slash command is addressed to
    the bot, so it needs no mention, but the same people and places only).
    """
    if guild_id is None:
        if not settings.allow_dms:
            return False
    else:
        if settings.allowed_guilds and guild_id not in settings.allowed_guilds:
            return False
        if settings.allowed_channels and not (
            channel_id in settings.allowed_channels
            or (parent_id is not None and parent_id in settings.allowed_channels)
        ):
            return False
    return user_id in settings.allowed_users


def verdict(msg: Inbound, settings: DiscordSettings, bot_id: int) -> Verdict:
    """Decide; the order matters: a stranger is refused before we look at the content."""
    if msg.author_is_bot or msg.author_id == bot_id or msg.system:
        return Verdict.IGNORE  # our own replies come back as MESSAGE_CREATE too
    if msg.guild_id is not None and bot_id not in msg.mentions:
        return Verdict.IGNORE  # talk among humans in a channel the bot can read
    if not admits(settings, msg.author_id, msg.channel_id, msg.guild_id, msg.parent_id):
        return Verdict.REFUSE
    if not strip_mention(msg.content, bot_id) and not msg.attachments:
        return Verdict.EMPTY  # files alone are a message; nothing at all is not
    return Verdict.INGEST
