"""Telegram updates → the few fields the bridge ingests; anything malformed becomes None.

Parsing never raises: an update we cannot read would otherwise be retried forever (its
offset never advances) and block every message behind it. Only ledger failures may hold
the offset back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentbridge_telegram.api import get_logger
from agentbridge_telegram.files import FileRef, file_refs

log = get_logger(__name__)


@dataclass(frozen=True)
class Inbound:
    """One message update, reduced."""

    update_id: int | None
    chat_id: int
    user_id: int | None
    message_id: int
    text: str | None  # text or caption; None for stickers, photos without caption…
    chat_type: str | None
    username: str | None
    files: tuple[FileRef, ...] = ()  # photo (largest size), document, voice note

    @property
    def meta(self) -> dict[str, Any]:
        """What the ledger keeps next to the text (shown by ``agentbridge messages``)."""
        return {
            "update_id": self.update_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "chat_type": self.chat_type,
            "username": self.username,
        }


def _clean(text: Any) -> str | None:
    """A str SQLite can store: lone surrogates (valid JSON, invalid UTF-8) become '?'."""
    if not isinstance(text, str) or not text:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")


def parse_update(update: dict[str, Any]) -> Inbound | None:
    """The message in ``update``, or None (edits, other update kinds, malformed: logged)."""
    update_id = update.get("update_id")
    if "edited_message" in update:
        log.info("telegram: ignored an edit (update %s): edits are not re-sent", update_id)
        return None
    msg = update.get("message")
    if not isinstance(msg, dict):
        log.debug("telegram: ignored update %s without a message", update_id)
        return None
    try:
        sender = msg.get("from") or {}
        chat = msg["chat"]
        user_id = sender.get("id")
        return Inbound(
            update_id=int(update_id) if update_id is not None else None,
            chat_id=int(chat["id"]),
            user_id=user_id if isinstance(user_id, int) else None,
            message_id=int(msg["message_id"]),
            text=_clean(msg.get("text")) or _clean(msg.get("caption")),
            chat_type=chat.get("type"),
            username=sender.get("username"),
            files=file_refs(msg),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.error("telegram: skipped malformed update %s: %r", update_id, exc)
        return None
