"""The Discord channel: gateway events and channel history in, REST messages out.

One object, ``DiscordChannel``, put together from parts with one job each, over one shared
state (``state.py``): ``receiving`` (messages, catch-up, the cursor), ``sending`` (replies,
files, buttons, reconcile), ``interacting`` (button clicks and slash commands). This module
only starts and stops the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import discord
from agentbridge.config import ConfigError
from agentbridge.plugin.protocols import ChannelContext, ChannelLimits

from agentbridge_discord import client as wiring
from agentbridge_discord.cursor import CursorStore
from agentbridge_discord.interacting import Interacting
from agentbridge_discord.outbound import MAX_MESSAGE_LENGTH
from agentbridge_discord.progressing import Progressing
from agentbridge_discord.receipts import ReceiptSender
from agentbridge_discord.receiving import Receiving
from agentbridge_discord.sending import EMPTY_REPLY, Sending
from agentbridge_discord.settings import DEFAULT_UPLOAD_LIMIT, load_token, parse_settings
from agentbridge_discord.state import log

__all__ = ["EMPTY_REPLY", "INTENT_HINT", "DiscordChannel"]

INTENT_HINT = (
    "discord: Discord refused the Message Content intent (close code 4014): enable it in the "
    "Developer Portal → Bot → Privileged Gateway Intents, or set "
    "channels.discord.message_content_intent = false (DMs and @mentions still carry text)"
)


class DiscordChannel(Receiving, Sending, Interacting, Progressing):
    """One bot. ``settings=None`` reads the table from ``ChannelContext.config`` at start."""

    name = "discord"
    limits = ChannelLimits(
        max_message_length=MAX_MESSAGE_LENGTH,
        supports_formatting=True,
        max_file_bytes=DEFAULT_UPLOAD_LIMIT,
    )

    async def start(self, ctx: ChannelContext) -> None:
        """Read the token, log in (REST ``/users/@me``), then run the gateway and the slash
        command registration in tasks."""
        if self.settings is None:
            self.settings = parse_settings(dict(ctx.config))
        settings = self.settings
        self.limits = replace(self.limits, max_file_bytes=settings.max_upload_bytes)
        token = load_token(settings, self._env)
        self._ctx = ctx
        self.cursors = CursorStore(ctx.state_dir)
        if not settings.allowed_users:
            log.warning("discord: allowed_users is empty: every sender will be refused")
        wiring.point_at(settings)
        self.client = wiring.BridgeClient(
            settings, self._on_message, self._on_session, self._on_interaction
        )
        self._receipts = ReceiptSender(self.client, self._origin)
        try:
            await asyncio.wait_for(self.client.login(token), settings.request_timeout)
        except discord.LoginFailure:
            await self.stop()
            raise ConfigError("config: channels.discord: the bot token was rejected") from None
        except (discord.HTTPException, OSError, TimeoutError) as exc:
            await self.stop()
            raise ConfigError(f"config: channels.discord: cannot log in: {exc}") from None
        user = self.client.user
        self.bot_id = user.id if user is not None else None
        log.info("discord: logged in as %s (%s)", user, self.bot_id)
        if settings.slash_commands:  # in the background: a slow Discord never delays start
            self._spawn(self.register_commands())
        self._task = asyncio.create_task(self._run(), name="discord-gateway")

    async def _run(self) -> None:
        """The gateway loop; discord.py reconnects and resumes, we only report what ends it."""
        assert self.client is not None
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            self.fatal = INTENT_HINT
            log.error(INTENT_HINT)
        except discord.ConnectionClosed as exc:
            self.fatal = f"discord: the gateway closed the session for good (code {exc.code})"
            log.error("%s: check the token and intents", self.fatal)

    async def stop(self) -> None:
        """Close the gateway and the HTTP session; safe to call twice."""
        client, self.client = self.client, None
        for bg in list(self._background):
            bg.cancel()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if client is not None:
            wiring.restore()

    def status(self) -> dict[str, Any]:
        """A small snapshot for ``agentbridge status``."""
        return {
            "bot_id": self.bot_id,
            "sessions": self.sessions,
            "catchups": self.catchups,
            "channels": len(self.cursors.cursors) if self.cursors else 0,
            "held": sorted(self._held),
            "refused": self.refused,
            "interactions": self.interactions,
            "ingest_failures": self.ingest_failures,
            "fatal": self.fatal,
        }
