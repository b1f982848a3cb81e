"""What the parts of the Discord channel share: one bot's client, context, counters, memory.

The channel is split by job (``receiving``, ``sending``, ``interacting``), each a class over
this one state, so every module stays small while ``DiscordChannel`` stays one object.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

import discord
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_discord import client as wiring
from agentbridge_discord.cursor import CursorStore
from agentbridge_discord.receipts import ReceiptSender
from agentbridge_discord.settings import DiscordSettings

log = logging.getLogger("agentbridge_discord.channel")


class ChannelState:
    """The fields and small helpers every part of the channel uses."""

    def __init__(
        self, settings: DiscordSettings | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self._env = env
        self._ctx: ChannelContext | None = None
        self.client: wiring.BridgeClient | None = None
        self.cursors: CursorStore | None = None
        self._receipts: ReceiptSender | None = None
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._held: set[int] = set()  # channels whose cursor waits for a failed ingest
        self._origins: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._progress: dict[str, list[str]] = {}  # chunk key → ids of sub-parts already sent
        self._nonces: OrderedDict[str, int] = OrderedDict()  # nonce → messages created
        self._answered: set[int] = set()  # refused users already told so
        self._background: set[asyncio.Task[Any]] = set()
        self.refused = 0
        self.ingest_failures = 0
        self.catchups = 0
        self.sessions = 0
        self.interactions = 0
        self.fatal: str | None = None
        self.bot_id: int | None = None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, channel_id: int) -> asyncio.Lock:
        return self._locks.setdefault(channel_id, asyncio.Lock())

    def _refuse(self, user_id: int, channel_id: int, guild_id: int | None) -> None:
        """Count and log a refused sender (by id, never the text)."""
        self.refused += 1
        log.warning(
            "discord: refused a message from user %s in channel %s (guild %s)",
            user_id,
            channel_id,
            guild_id,
        )

    @property
    def timeout(self) -> float:
        """Seconds one REST call may take."""
        return self.settings.request_timeout if self.settings else 20.0

    async def _notice(self, channel_id: int, message_id: int | None, text: str) -> None:
        """A one-line answer to a sender (refusals, files too large); best effort."""
        if self.client is None:
            return
        try:
            where = self.client.get_partial_messageable(channel_id)
            reference = (
                None
                if message_id is None
                else discord.MessageReference(
                    message_id=message_id, channel_id=channel_id, fail_if_not_exists=False
                )
            )
            await asyncio.wait_for(
                where.send(text, reference=reference, mention_author=False),  # type: ignore[arg-type]
                self.timeout,
            )
        except Exception as exc:
            log.debug("discord: notice to %s not sent: %s", channel_id, type(exc).__name__)
