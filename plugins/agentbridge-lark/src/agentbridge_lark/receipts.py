"""Receipts on Lark: one reaction of the bot's on the sender's message (Lark emoji keys).

- ``injected`` / ``working`` → ``OnIt`` (the agent has it / is on it)
- ``replied`` → ``DONE``; ``failed`` / ``interrupted`` → ``ERROR``
- ``waiting`` → ``OneSecond`` (the agent is rate limited or blocked; the detail goes to the log)
- ``queued`` → nothing (the sender just sent it; silence is the expected state)

The bot takes its previous reaction away before adding the next (Lark wants the reaction id
for that, which the add returned), so the message shows the latest state only. Best effort:
a failure is logged at debug level and forgotten; a receipt never holds up a reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from agentbridge.kinds import ReceiptKind
from agentbridge.plugin.protocols import Receipt

from agentbridge_lark.api import LarkApi

log = logging.getLogger(__name__)

REACTIONS: dict[ReceiptKind, str | None] = {
    ReceiptKind.QUEUED: None,
    ReceiptKind.INJECTED: "OnIt",
    ReceiptKind.WORKING: "OnIt",
    ReceiptKind.REPLIED: "DONE",
    ReceiptKind.FAILED: "ERROR",
    ReceiptKind.WAITING: "OneSecond",
    ReceiptKind.INTERRUPTED: "ERROR",
}
RECEIPT_TIMEOUT = 10.0
MEMORY = 2048


class ReceiptSender:
    """Turns receipts into the bot's reaction on the original message."""

    def __init__(self, api: LarkApi) -> None:
        self._api = api
        self._shown: OrderedDict[str, tuple[str, str]] = OrderedDict()  # message → (emoji, id)

    async def send(self, receipt: Receipt) -> None:
        """Show one receipt; swallows every error (receipts are decoration, not delivery)."""
        try:
            await asyncio.wait_for(self._send(receipt), RECEIPT_TIMEOUT)
        except Exception as exc:
            log.debug("lark receipt %s not shown: %s", receipt.status, type(exc).__name__)

    async def _send(self, receipt: Receipt) -> None:
        emoji = REACTIONS.get(ReceiptKind(receipt.status))
        target = receipt.platform_message_id or ""
        if emoji is None or not target.startswith("om_"):
            return
        if receipt.status == ReceiptKind.WAITING and receipt.detail:
            log.info("lark: message %s waits: %s", receipt.message_id, receipt.detail[:200])
        before = self._shown.get(target)
        if before is not None and before[0] == emoji:
            return
        if before is not None:
            try:
                await self._api.delete_reaction(target, before[1])
            except Exception as exc:  # the old one stays: the new one still shows the state
                log.debug("lark: old reaction not removed: %s", type(exc).__name__)
        reaction_id = await self._api.add_reaction(target, emoji)
        self._shown[target] = (emoji, reaction_id)
        self._shown.move_to_end(target)
        while len(self._shown) > MEMORY:
            self._shown.popitem(last=False)
