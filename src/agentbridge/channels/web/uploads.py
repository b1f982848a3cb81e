"""The chat form's files: a ``multipart/form-data`` POST to ``/api/send`` → fields + files.

Streamed part by part with a per-file cap, so an oversized upload is refused before it is held
whole in memory (``client_max_size`` bounds only non-streamed bodies); the core applies its own
``[attachments] max_bytes`` again when it stores them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge

__all__ = ["MAX_FILES", "MAX_UPLOAD_BYTES", "read_form"]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_FILES = 10


async def read_form(
    request: web.Request, max_bytes: int = MAX_UPLOAD_BYTES
) -> tuple[dict[str, Any], list[Attachment]]:
    """The text fields (``text``, ``key``, ``conversation``, ``agent``) and the files.

    Raises ``AttachmentTooLarge`` (a file over ``max_bytes``, or too many files) and
    ``ValueError`` (a malformed form)."""
    reader = await request.multipart()
    fields: dict[str, Any] = {}
    files: list[Attachment] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ValueError("nested multipart is not accepted")
        if part.filename is None:
            if part.name in {"text", "key", "conversation", "agent"}:
                fields[part.name] = await part.text()
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
