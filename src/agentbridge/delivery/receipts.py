"""Receipts: what a sender sees of their message's progress, pushed to its channel.

queued → injected → working → replied / failed / waiting / interrupted (someone pressed Esc in
the agent's pane: the turn stopped on purpose, not retried). Best effort by design: a channel that
cannot show a receipt must never slow or break the message itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pluggy

from agentbridge.kinds import ReceiptKind
from agentbridge.models import Message
from agentbridge.plugin.protocols import Channel, Receipt

log = logging.getLogger(__name__)


class Receipts:
    """Sends receipts to the originating channel and to the ``message_receipt`` hook."""

    def __init__(self, channels: Mapping[str, Channel], pm: pluggy.PluginManager) -> None:
        self.channels = channels
        self.pm = pm
        self._tasks: set[asyncio.Task[Any]] = set()

    def emit(self, message: Message, status: ReceiptKind, detail: str = "") -> None:
        """Fire and forget; never raises."""
        receipt = Receipt(
            message_id=message.id,
            channel=message.channel,
            conversation=message.conversation,
            status=status,
            detail=detail,
            platform_message_id=message.platform_id,
        )
        try:
            self.pm.hook.message_receipt(receipt=receipt)
        except Exception:
            log.exception("message %s: a message_receipt hook failed", message.id)
        channel = self.channels.get(message.channel)
        if channel is None:
            return
        task = asyncio.get_running_loop().create_task(self._send(channel, receipt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, channel: Channel, receipt: Receipt) -> None:
        try:
            await asyncio.wait_for(channel.receipt(receipt), timeout=10)
        except Exception as exc:
            log.info(
                "message %s: receipt %s not shown on %s: %s",
                receipt.message_id,
                receipt.status,
                channel.name,
                exc,
            )
