"""Receipts on Telegram: quiet signals on the sender's own message, never an error.

- ``injected`` → 👀 on the original message (the agent has it)
- ``working``  → "typing…", renewed every few seconds until the turn ends (capped)
- ``replied``  → 👍, ``failed`` → 👎, ``interrupted`` → 🤷 (stopped in the agent's pane)
- ``waiting``  → 😴, plus one short line with the detail (e.g. "rate-limited until 15:45")
- ``queued``   → nothing (the sender just sent it; silence is the expected state)

A reaction replaces the bot's previous one, so the original message always shows the latest
state. Everything here is best effort: a failure is logged at debug level and forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from agentbridge.plugin.protocols import Receipt

from agentbridge_telegram.api import BotApi, get_logger

log = get_logger(__name__)

REACTIONS = {
    "injected": "👀",
    "replied": "👍",
    "failed": "👎",
    "waiting": "😴",
    "interrupted": "🤷",
}
TYPING_EVERY = 4.5  # Telegram shows "typing" for 5 s
TYPING_MAX = 600.0  # a stuck turn must not type forever
RECEIPT_TIMEOUT = 5.0

#: finds (chat id, telegram message id) of a ledger message, or None
OriginLookup = Callable[[Receipt], Awaitable[tuple[str, int] | None]]


class ReceiptSender:
    """Turns receipts into reactions, chat actions and (rarely) one short text."""

    def __init__(self, api: BotApi, origin: OriginLookup) -> None:
        self._api = api
        self._origin = origin
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._noted: OrderedDict[int, None] = OrderedDict()  # "waiting" texts already sent

    async def send(self, receipt: Receipt) -> None:
        """Show one receipt; swallows every error (receipts are decoration, not delivery)."""
        try:
            await self._send(receipt)
        except Exception as exc:
            log.debug(
                "telegram receipt %s for message %s not shown: %s",
                receipt.status,
                receipt.message_id,
                self._api.redact(str(exc)),
            )

    async def _send(self, receipt: Receipt) -> None:
        chat = receipt.conversation
        if receipt.status == "working":
            self._start_typing(chat)
            return
        if receipt.status in ("replied", "failed", "waiting", "interrupted"):
            self._stop_typing(chat)
        emoji = REACTIONS.get(receipt.status)
        if emoji is None:
            return
        origin = await self._origin(receipt)
        if origin is None:
            return
        chat_id, message_id = origin
        await self._api.call(
            "setMessageReaction",
            http_timeout=RECEIPT_TIMEOUT,
            chat_id=chat_id,
            message_id=message_id,
            reaction=[{"type": "emoji", "emoji": emoji}],
        )
        if receipt.status == "waiting" and receipt.detail and receipt.message_id not in self._noted:
            self._noted[receipt.message_id] = None
            while len(self._noted) > 1000:
                self._noted.popitem(last=False)
            await self._api.call(
                "sendMessage",
                http_timeout=RECEIPT_TIMEOUT,
                chat_id=chat_id,
                text=f"⏳ {receipt.detail[:200]}",
                reply_parameters={"message_id": message_id, "allow_sending_without_reply": True},
                disable_notification=True,
            )

    def _start_typing(self, chat: str) -> None:
        task = self._typing.get(chat)
        if task is None or task.done():
            self._typing[chat] = asyncio.get_running_loop().create_task(self._keep_typing(chat))

    def _stop_typing(self, chat: str) -> None:
        task = self._typing.pop(chat, None)
        if task is not None:
            task.cancel()

    async def _keep_typing(self, chat: str) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + TYPING_MAX
        while loop.time() < until:
            try:
                await self._api.call(
                    "sendChatAction", http_timeout=RECEIPT_TIMEOUT, chat_id=chat, action="typing"
                )
            except Exception as exc:
                log.debug("telegram typing for %s: %s", chat, self._api.redact(str(exc)))
            await asyncio.sleep(TYPING_EVERY)

    async def close(self) -> None:
        """Stop every typing loop; safe to call twice."""
        tasks = list(self._typing.values())
        self._typing.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
