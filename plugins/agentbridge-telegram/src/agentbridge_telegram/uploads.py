"""Files out: ``sendPhoto`` for an image Telegram can show, ``sendDocument`` for the rest.

The Bot API takes documents up to 50 MB and photos up to 10 MB (a bigger image goes as a
document, so the user still gets it, uncompressed). The relay has already checked the file
against ``limits.max_file_bytes``; this module picks the method, puts the caption under the
file (plain text: an agent's caption is not our HTML) and falls back to a document when
Telegram refuses an image as a photo (odd dimensions): a 400 proves nothing was posted.
"""

from __future__ import annotations

import re
from typing import Any

from agentbridge.plugin.protocols import OutFile

from agentbridge_telegram.api import BotApi, TelegramApiError, Upload, get_logger
from agentbridge_telegram.formatting import utf16_len

log = get_logger(__name__)

PHOTO_MAX = 10 * 1024 * 1024
DOCUMENT_MAX = 50 * 1024 * 1024
CAPTION_MAX = 1024  #: UTF-16 units, like message text
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
#: an upload's timeout grows with its size (a slow uplink must not turn into "unknown")
UPLOAD_BYTES_PER_SECOND = 256 * 1024
_NOT_A_PHOTO = re.compile(r"photo_invalid|image_process_failed|photo_.*dimensions", re.I)


def method_for(file: OutFile) -> tuple[str, str]:
    """(Bot API method, form field) for ``file``."""
    if file.media_type in PHOTO_TYPES and len(file.data) <= PHOTO_MAX:
        return "sendPhoto", "photo"
    return "sendDocument", "document"


def split_caption(caption: str) -> tuple[str, str]:
    """(caption under the file, text sent after it): a caption over 1024 units goes whole
    into messages after the file, never cut."""
    if utf16_len(caption) <= CAPTION_MAX:
        return caption, ""
    return "", caption


async def send_file(
    api: BotApi,
    timeout: float,
    chat: int | str,
    file: OutFile,
    caption: str,
    reply_to: int | None,
) -> tuple[int | str, str]:
    """One upload (two after a refused photo, or a migrated group); (chat, message id)."""
    params: dict[str, Any] = {"caption": caption or None}
    if reply_to is not None:
        params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
    method, field = method_for(file)
    total = timeout + len(file.data) / UPLOAD_BYTES_PER_SECOND
    migrated = False
    while True:
        upload = Upload(field, file.name, file.data, file.media_type)
        try:
            result = await api.upload(method, upload, http_timeout=total, chat_id=chat, **params)
            return chat, str(result["message_id"])
        except TelegramApiError as exc:
            if method == "sendPhoto" and exc.status == 400 and _NOT_A_PHOTO.search(str(exc)):
                log.info("telegram: %s refused as a photo (%s); sending a document", file.name, exc)
                method, field = "sendDocument", "document"
                continue
            if exc.migrate_to_chat_id is not None and not migrated:
                log.info("telegram: chat %s moved to %s", chat, exc.migrate_to_chat_id)
                chat, migrated = exc.migrate_to_chat_id, True
                continue
            raise
