"""Files in: a message's attachments → ``Attachment`` records (files out: ``sending.py``).

Each attachment of a message the ledger takes is downloaded from its URL (Discord's CDN)
before the ingest, under the smaller of ``max_attachment_bytes`` and the core's
``[attachments] max_bytes`` (the size Discord declares is checked before a byte is fetched, the
bytes after), and handed to ``ctx.ingest``, which stores it under the agent's cwd. A file
Discord will not serve (403/404: deleted, expired) is refused with a line to the sender; a 5xx
or a network failure raises, so the message is read again (the cursor holds).

Out, an agent's file is the relay's ``deliver_file``: the relay checks its path and its size
against ``limits.max_file_bytes`` (``max_upload_bytes``: 10 MiB for bots outside boosted
servers, discord.py's ``DEFAULT_FILE_SIZE_LIMIT_BYTES``) and reads it; Discord's own 413 is
a permanent error (``outbound.classify``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord
from agentbridge.plugin.protocols import Attachment

__all__ = ["FileLink", "FileRefused", "download", "keyword", "links"]


class FileRefused(Exception):
    """An attachment that will not be forwarded; ``str()`` is the line for the sender."""


@dataclass(frozen=True)
class FileLink:
    """One attachment of a message, as Discord names it (not yet fetched)."""

    name: str
    url: str
    size: int
    media_type: str


def links(msg: discord.Message) -> tuple[FileLink, ...]:
    """The attachments of a message; malformed ones are left out (never raises)."""
    found: list[FileLink] = []
    for item in getattr(msg, "attachments", None) or ():
        url, name = getattr(item, "url", None), getattr(item, "filename", None)
        if not isinstance(url, str) or not url or not isinstance(name, str):
            continue
        size = getattr(item, "size", 0)
        media = getattr(item, "content_type", None)
        found.append(
            FileLink(
                name=name or "file",
                url=url,
                size=size if isinstance(size, int) and size >= 0 else 0,
                media_type=media if isinstance(media, str) else "application/octet-stream",
            )
        )
    return tuple(found)


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 100_000 else f"{size} bytes"


async def download(
    http: discord.http.HTTPClient, items: tuple[FileLink, ...], cap: int
) -> list[Attachment]:
    """Fetch every file (in memory, each at most ``cap`` bytes) as ``Attachment`` records."""
    out: list[Attachment] = []
    for link in items:
        if link.size > cap:
            raise FileRefused(
                f"Not delivered: {link.name!r} is {_mb(link.size)}, over the bridge's "
                f"{_mb(cap)} limit for Discord attachments."
            )
        try:
            data = await http.get_from_cdn(link.url)
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise  # Discord's trouble, not the file's: the message is read again
            raise FileRefused(
                f"Not delivered: Discord would not serve {link.name!r} (HTTP {exc.status})."
            ) from None
        if len(data) > cap:
            raise FileRefused(f"Not delivered: {link.name!r} is over {_mb(cap)}.")
        out.append(Attachment(link.name, link.media_type, data=data, size=len(data)))
    return out


def keyword(attachments: list[Attachment]) -> dict[str, Any]:
    """``attachments=`` for ``ctx.ingest`` only when there are files (a core without the
    parameter still takes plain messages)."""
    return {"attachments": attachments} if attachments else {}
