"""Replies out: one relay chunk in Telegram-sized parts, or one file and its caption's rest.

At most once per part: the relay records each chunk the platform accepted (``parts_sent``)
and a retry resumes after it; within a chunk, the sub-parts already sent in this process are
kept (``_parts``) so a 429 on a later one never sends an earlier one twice.
"""

from __future__ import annotations

import hashlib

from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, OutFile

from agentbridge_telegram import buttons
from agentbridge_telegram.api import (
    BotApi,
    TelegramApiError,
    TelegramNetworkError,
    get_logger,
    to_delivery_error,
)
from agentbridge_telegram.formatting import MAX_MESSAGE_LENGTH, chunk_text
from agentbridge_telegram.outbound import chat_ref, reply_target, send_part
from agentbridge_telegram.settings import TelegramSettings
from agentbridge_telegram.uploads import send_file, split_caption

log = get_logger(__name__)

EMPTY_REPLY = "(the agent's reply was empty)"


class Sender:
    """The sending half of one started channel."""

    def __init__(self, api: BotApi, settings: TelegramSettings) -> None:
        self._api = api
        self.settings = settings
        self._parts: dict[str, list[str]] = {}  # chunk key → ids of sub-parts already sent

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one relay chunk in parts of ≤ 4096 UTF-16 units; return the first message id.

        The relay hands us the chunk's index in ``item.parts_sent``, so a retry resumes after
        what the chat already has. Only the reply's very first message quotes the sender's.
        """
        digest = hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        index = item.parts_sent
        key = f"{item.idem_key}:{index}:{digest}"
        sent = self._parts.setdefault(key, [])
        chat: int | str = chat_ref(item.conversation)
        markup = buttons.keyboard(item)  # a permission question's Allow / Deny
        try:
            parts = chunk_text(item.text, MAX_MESSAGE_LENGTH) or [EMPTY_REPLY]
            for number, part in enumerate(parts):
                if number < len(sent):
                    continue
                first = index == 0 and number == 0
                reply = reply_target(item.reply_to) if first else None
                keys = markup if number == len(parts) - 1 else None
                chat, message_id = await send_part(
                    self._api, self.settings, chat, part, reply, keys
                )
                sent.append(message_id)
        except (TelegramApiError, TelegramNetworkError) as exc:
            raise self._failed(item, key, exc) from None
        self._parts.pop(key, None)
        return sent[0]

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload a file the relay checked and read (``uploads``): a photo or a document,
        quoting the sender's message; a caption too long for Telegram follows as text."""
        key = f"{item.idem_key}:file"
        sent = self._parts.setdefault(key, [])  # [upload id, caption part ids…]
        chat: int | str = chat_ref(item.conversation)
        caption, rest = split_caption(file.caption)
        try:
            if not sent:
                reply = reply_target(item.reply_to)
                timeout = self.settings.request_timeout
                chat, message_id = await send_file(self._api, timeout, chat, file, caption, reply)
                sent.append(message_id)
            for number, part in enumerate(chunk_text(rest, MAX_MESSAGE_LENGTH) if rest else []):
                if number + 1 < len(sent):
                    continue
                chat, message_id = await send_part(self._api, self.settings, chat, part, None)
                sent.append(message_id)
        except (TelegramApiError, TelegramNetworkError) as exc:
            raise self._failed(item, key, exc) from None
        self._parts.pop(key, None)
        return sent[0]

    def _failed(self, item: OutboxItem, key: str, exc: Exception) -> DeliveryError:
        """What the relay gets; progress is kept for a retry unless the failure is final."""
        error = to_delivery_error(exc)
        if error.error_class is ErrorClass.PERMANENT:
            self._parts.pop(key, None)
        log.warning(
            "telegram: reply %s to %s not delivered (%s): %s",
            item.id,
            item.conversation,
            error.error_class,
            exc,
        )
        return error
