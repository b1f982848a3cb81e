"""Receipts on Discord: one reaction of the bot's on the sender's own message.

- ``injected`` / ``working`` → 👀 (the agent has it / is on it)
- ``replied`` → ✅, ``failed`` → ⚠️, ``interrupted`` → ⏹️
- ``waiting`` → ⏳ (the agent is rate limited or blocked; the detail goes to the log)
- ``queued`` → nothing (the sender just sent it; silence is the expected state)

The bot removes its previous reaction before adding the next, so the message shows the
latest state only. Everything here is best effort: a failure is logged at debug level and
forgotten, and never delays a reply for long (each call has its own short timeout).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import discord
from agentbridge.plugin.protocols import Receipt

from agentbridge_discord.outbound import remember

log = logging.getLogger(__name__)

REACTIONS = {
    "injected": "👀",
    "working": "👀",
    "replied": "✅",
    "failed": "⚠️",
    "waiting": "⏳",
    "interrupted": "⏹️",
}
RECEIPT_TIMEOUT = 5.0

#: finds (channel id, Discord message id) of a ledger message, or None
OriginLookup = Callable[[Receipt], Awaitable[tuple[int, int] | None]]


class ReceiptSender:
    """Turns receipts into the bot's reaction on the original message."""

    def __init__(self, client: discord.Client, origin: OriginLookup) -> None:
        self._client = client
        self._origin = origin
        self._shown: OrderedDict[tuple[int, int], str] = OrderedDict()

    async def send(self, receipt: Receipt) -> None:
        """Show one receipt; swallows every error (receipts are decoration, not delivery)."""
        try:
            await asyncio.wait_for(self._send(receipt), RECEIPT_TIMEOUT * 2)
        except Exception as exc:
            log.debug(
                "discord receipt %s for message %s not shown: %s",
                receipt.status,
                receipt.message_id,
                type(exc).__name__,
            )

    async def _send(self, receipt: Receipt) -> None:
        emoji = REACTIONS.get(receipt.status)
        if emoji is None:
            return
        origin = await self._origin(receipt)
        if origin is None:
            return
        if receipt.status == "waiting" and receipt.detail:
            log.info("discord: message %s waits: %s", receipt.message_id, receipt.detail[:200])
        before = self._shown.get(origin)
        if before == emoji:
            return
        channel_id, message_id = origin
        message = self._client.get_partial_messageable(channel_id).get_partial_message(message_id)
        remember(self._shown, origin, emoji, cap=2048)
        if before is not None:
            try:
                await asyncio.wait_for(message.remove_reaction(before, _me(self._client)), 5.0)
            except Exception as exc:  # the old one stays: the new one still shows the state
                log.debug("discord: old reaction not removed: %s", type(exc).__name__)
        await asyncio.wait_for(message.add_reaction(emoji), RECEIPT_TIMEOUT)


def _me(client: discord.Client) -> discord.abc.Snowflake:
    if client.user is None:
        raise RuntimeError("not logged in")
    return client.user
