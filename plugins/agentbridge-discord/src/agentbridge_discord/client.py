"""The discord.py side: the client subclass whose events feed the channel, and where it points.

discord.py has no per-client base URL: REST routes are built from the class attribute
``discord.http.Route.BASE`` and the gateway from ``DiscordWebSocket.DEFAULT_GATEWAY`` (a plain
``Client`` never asks ``/gateway/bot``; only the sharded client does). ``point_at`` sets both
for ``api_base_url``/``gateway_url`` (tests, proxies) and ``restore`` puts them back, so the
override is process-wide: one pointed Discord channel per process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
import yarl
from discord.gateway import DiscordWebSocket

from agentbridge_discord.settings import DiscordSettings

log = logging.getLogger(__name__)

API_VERSION = 10


class _NoVoiceNotice(logging.Filter):
    """discord.py warns at every start that voice libraries are missing; we never use voice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


logging.getLogger("discord.client").addFilter(_NoVoiceNotice())
_DEFAULTS: tuple[str, yarl.URL] = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)


def point_at(settings: DiscordSettings) -> None:
    """Send discord.py's REST and gateway traffic to ``settings``' URLs (if set)."""
    if settings.api_base_url is None or settings.gateway_url is None:
        restore()
        return
    discord.http.Route.BASE = f"{settings.api_base_url}/api/v{API_VERSION}"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def restore() -> None:
    """Discord's own URLs again."""
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = _DEFAULTS


def intents(settings: DiscordSettings) -> discord.Intents:
    """DMs and guild messages; Message Content only when asked for (it is privileged)."""
    wanted = discord.Intents.none()
    wanted.guilds = True  # channel/thread cache: tells threads from channels, guild ids
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.guild_reactions = False
    wanted.message_content = settings.message_content_intent
    return wanted


class BridgeClient(discord.Client):
    """A ``discord.Client`` that hands its four events to the channel's coroutines."""

    def __init__(
        self,
        settings: DiscordSettings,
        on_message: Callable[[discord.Message], Awaitable[None]],
        on_session: Callable[[str], Awaitable[None]],
        on_interaction: Callable[[discord.Interaction], Awaitable[None]],
        **options: Any,
    ) -> None:
        super().__init__(
            intents=intents(settings),
            max_messages=None,  # the ledger is our memory; no message cache
            max_ratelimit_timeout=30.0,  # a longer 429 is raised: the outbox waits, not us
            chunk_guilds_at_startup=False,
            **options,
        )
        self._bridge_message = on_message
        self._bridge_session = on_session
        self._bridge_interaction = on_interaction

    async def on_message(self, message: discord.Message) -> None:
        """Every MESSAGE_CREATE (ours included; the channel filters)."""
        await self._bridge_message(message)

    async def on_connect(self) -> None:
        """READY: a new gateway session; events sent while we were away were not replayed."""
        await self._bridge_session("ready")

    async def on_resumed(self) -> None:
        """RESUMED: Discord replays what we missed; the catch-up double-checks, cheaply."""
        await self._bridge_session("resumed")

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """INTERACTION_CREATE: a button click or a slash command (no command tree: ours)."""
        await self._bridge_interaction(interaction)
