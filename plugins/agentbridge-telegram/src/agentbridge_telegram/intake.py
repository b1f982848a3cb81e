"""One update in: a stranger refused, a button click answered, a message (and its files)
ingested — or the sender told why not.

``handle`` returns only once the update needs no re-delivery and raises only when the ingest
itself failed: then the poller keeps its offset and Telegram hands the update out again.
It also remembers which Telegram message each ledger message came from, for receipts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from agentbridge.ledger.sqlite import IdempotencyConflict
from agentbridge.plugin.protocols import AttachmentTooLarge, ChannelContext, Receipt
from agentbridge.supervisor.routing import Unroutable

from agentbridge_telegram import buttons
from agentbridge_telegram.api import BotApi, TelegramApiError, get_logger
from agentbridge_telegram.files import fetch
from agentbridge_telegram.inbound import parse_update
from agentbridge_telegram.outbound import message_key, remember, reply_target
from agentbridge_telegram.settings import TelegramSettings

log = get_logger(__name__)

NOT_AUTHORISED = "Sorry, you are not authorised to use this bot."
TEXT_ONLY = (
    "Only text, photos, documents and voice notes reach the agent; this one was not forwarded."
)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Intake:
    """The receiving half of one started channel (the poller or the webhook feeds it)."""

    def __init__(
        self, api: BotApi, ctx: ChannelContext, settings: TelegramSettings, spawn: Spawn
    ) -> None:
        self._api = api
        self._ctx = ctx
        self.settings = settings
        self._spawn = spawn
        self._origins: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self._answered: set[int | None] = set()  # refused users already told so
        self.refused = 0

    async def handle(self, update: dict[str, Any]) -> None:
        """Ingest one update (or refuse it); returns only once it needs no re-delivery.

        Raises only when the ingest itself failed: then the update must come back.
        """
        if "callback_query" in update:  # a button: its answer text, ingested like a message
            click = buttons.parse_click(update)
            if click is not None:
                allowed = frozenset(self.settings.allowed_users)
                ok = await buttons.handle_click(self._api, self._ctx, allowed, click, self._spawn)
                self.refused += not ok  # a stranger's click: counted like their messages
            return
        msg = parse_update(update)
        if msg is None:
            return
        if msg.user_id is None or msg.user_id not in self.settings.allowed_users:
            self._refuse(msg.user_id, msg.chat_id, msg.message_id)
            return
        if msg.text is None and not msg.files:
            log.info("telegram: message %s has no text; told the sender", msg.message_id)
            self._spawn(self.notice(msg.chat_id, msg.message_id, TEXT_ONLY))
            return
        try:
            async with fetch(self._api, msg.files, self._ctx) as attachments:
                result = await self._ctx.ingest(
                    str(msg.chat_id),
                    str(msg.user_id),
                    msg.text or "",  # a photo without caption is still a message
                    key=message_key(msg.chat_id, msg.message_id),
                    meta=msg.meta,
                    **({"attachments": attachments} if attachments else {}),  # older cores
                )
        except (AttachmentTooLarge, TelegramApiError) as exc:  # refused: tell the sender
            if isinstance(exc, TelegramApiError) and (exc.status >= 500 or exc.status == 429):
                raise  # Telegram's trouble, not the file's: the update comes back
            text = str(exc) if isinstance(exc, AttachmentTooLarge) else f"Not delivered: {exc}"
            self._spawn(self.notice(msg.chat_id, msg.message_id, text))
            return
        except IdempotencyConflict as exc:
            # same key, other text: the ledger recorded the refusal; nothing to re-deliver
            log.warning("telegram: %s", exc)
            return
        except Unroutable as exc:  # no agent takes it: tell the sender, never re-deliver
            self._spawn(self.notice(msg.chat_id, msg.message_id, f"Not delivered: {exc}"))
            return
        self.remember(result.message.id, str(msg.chat_id), msg.message_id)

    def _refuse(self, user_id: int | None, chat_id: int, message_id: int) -> None:
        self.refused += 1
        log.warning(
            "telegram: refused a message from unauthorised user %s in chat %s", user_id, chat_id
        )
        # once per user: a stranger cannot make the bot spam a chat
        if self.settings.unauthorised_reply and user_id not in self._answered:
            if len(self._answered) > 10_000:  # bounded even under a swarm of strangers
                self._answered.clear()
            self._answered.add(user_id)
            self._spawn(self.notice(chat_id, message_id, NOT_AUTHORISED))

    async def notice(self, chat_id: int | str, message_id: int, text: str) -> None:
        """A short note quoting the sender's message; best effort, never raises."""
        try:
            await self._api.call(
                "sendMessage",
                chat_id=chat_id,
                text=text,
                reply_parameters={"message_id": message_id, "allow_sending_without_reply": True},
            )
        except Exception as exc:
            log.debug("telegram: notice to %s not sent: %s", chat_id, exc)

    def remember(self, ledger_id: int, chat: str, message_id: int) -> None:
        remember(self._origins, ledger_id, (chat, message_id))

    async def origin(self, receipt: Receipt) -> tuple[str, int] | None:
        """(chat, telegram message id) of the sender's message: memory, receipt, ledger."""
        found = self._origins.get(receipt.message_id)
        if found is not None:
            return found
        target = reply_target(receipt.platform_message_id)  # the bridge passes our key
        if target is None and self._ctx.ledger is not None:
            message = await self._ctx.ledger.get(receipt.message_id)
            target = reply_target(getattr(message, "platform_id", None))
        return None if target is None else (receipt.conversation, target)
