"""Outbound helpers: the ingest key, reply targets, and sending one part with fallbacks."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from agentbridge_telegram.api import BotApi, TelegramApiError, get_logger
from agentbridge_telegram.formatting import to_html
from agentbridge_telegram.settings import TelegramSettings

log = get_logger(__name__)


def message_key(chat_id: int | str, message_id: int) -> str:
    """The ingest idempotency key: unique per chat forever, unlike ``update_id``.

    Telegram may restart ``update_id`` numbering at random after a week without updates, and
    a webhook ↔ polling switch re-delivers the same messages; ``chat_id:message_id`` is stable.
    """
    return f"{chat_id}:{message_id}"


def reply_target(reply_to: str | None) -> int | None:
    """Telegram message id from an outbox ``reply_to`` (our key ``chat:msg`` or a bare id)."""
    if not reply_to:
        return None
    tail = reply_to.rsplit(":", 1)[-1]
    return int(tail) if tail.lstrip("-").isdigit() else None


def chat_ref(conversation: str) -> int | str:
    return int(conversation) if conversation.lstrip("-").isdigit() else conversation


async def send_part(
    api: BotApi,
    settings: TelegramSettings,
    chat: int | str,
    part: str,
    reply_to: int | None,
    markup: dict[str, Any] | None = None,
) -> tuple[int | str, str]:
    """One sendMessage: HTML first, plain text if Telegram cannot parse our entities;
    ``markup`` is an inline keyboard (``buttons.keyboard``)."""
    base: dict[str, Any] = {"link_preview_options": {"is_disabled": True}}
    if markup is not None:
        base["reply_markup"] = markup
    if reply_to is not None:
        base["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
    attempts: list[dict[str, Any]] = [{"text": part}]
    if settings.parse_mode == "HTML":
        attempts.insert(0, {"text": to_html(part), "parse_mode": "HTML"})
    for migrated in (False, True):
        for number, fields in enumerate(attempts):
            try:
                result = await api.call("sendMessage", chat_id=chat, **base, **fields)
                return chat, str(result["message_id"])
            except TelegramApiError as exc:
                if exc.cannot_parse_entities and number + 1 < len(attempts):
                    log.info("telegram: HTML refused (%s); sending plain text", exc)
                    continue
                if exc.migrate_to_chat_id is not None and not migrated:
                    log.info("telegram: chat %s moved to %s", chat, exc.migrate_to_chat_id)
                    chat = exc.migrate_to_chat_id
                    break
                raise
    raise TelegramApiError("sendMessage", 400, "group migrated twice")


def remember(memory: OrderedDict[Any, Any], key: Any, value: Any, cap: int = 4096) -> None:
    """Remember ``key`` in a bounded, oldest-first-forgotten map."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > cap:
        memory.popitem(last=False)
