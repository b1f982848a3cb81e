"""The chat form's files: a ``multipart/form-data`` POST to ``/api/send`` → fields + files.

Streamed part by part with a per-file cap, so an oversized upload is refused before it is held
whole in memory (``client_max_size`` bounds only non-streamed bodies); the core applies its own
``[attachments] max_bytes`` again when it stores them. The text fields are capped too
(``FIELD_BYTES``): a form's ``text`` was read whole however large it was.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge

__all__ = ["FIELD_BYTES", "MAX_FILES", "MAX_TEXT", "MAX_UPLOAD_BYTES", "FieldTooLarge", "read_form"]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_FILES = 10
MAX_TEXT = 500_000  #: the longest message text the console takes (characters)
#: the most bytes each text field may have: ``text`` up to ``MAX_TEXT`` characters in UTF-8
#: (4 bytes at most each); the names (key, conversation, agent) are 80 ASCII characters
FIELD_BYTES = {"text": 4 * MAX_TEXT, "key": 1024, "conversation": 1024, "agent": 1024}


class FieldTooLarge(AttachmentTooLarge):
    """A text field of the form over its ``FIELD_BYTES`` (refused like a file: 413)."""


async def _field(part: BodyPartReader, name: str) -> str:
    """The field's text, read no further than its cap (``part.text()`` reads it all)."""
    limit = FIELD_BYTES[name]
    data = bytearray()
    while chunk := await part.read_chunk(1 << 16):
        data += chunk
        if len(data) > limit:
            raise FieldTooLarge(f"Not sent: the form field {name!r} is over {limit} bytes.")
    return part.decode(bytes(data)).decode(part.get_charset(default="utf-8"))


async def read_form(
    request: web.Request, max_bytes: int = MAX_UPLOAD_BYTES
) -> tuple[dict[str, Any], list[Attachment]]:
    """The text fields (``text``, ``key``, ``conversation``, ``agent``) and the files.

    Raises ``AttachmentTooLarge`` (a file over ``max_bytes``, too many files, or a
    ``FieldTooLarge`` text field) and ``ValueError`` (a malformed form)."""
    reader = await request.multipart()
    fields: dict[str, Any] = {}
    files: list[Attachment] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ValueError("nested multipart is not accepted")
        if part.filename is None:
            if part.name in FIELD_BYTES:
                fields[part.name] = await _field(part, part.name)
            continue
        if len(files) >= MAX_FILES:
            raise AttachmentTooLarge(f"Not sent: at most {MAX_FILES} files per message.")
        data = bytearray()
        while chunk := await part.read_chunk(1 << 16):
            data += chunk
            if len(data) > max_bytes:
                raise AttachmentTooLarge(
                    f"Not sent: the file {part.filename!r} is over the "
                    f"{max_bytes / 1e6:.1f} MB limit per file."
                )
        media = part.headers.get("Content-Type") or "application/octet-stream"
        name = unquote(part.filename)  # clients %-encode odd characters; the core sanitizes
        files.append(Attachment(name, media, data=bytes(data)))
    return fields, files
