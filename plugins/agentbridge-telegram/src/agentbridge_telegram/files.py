"""Photos, documents and voice notes of an update → ``Attachment`` records for the ingest.

The largest photo size is taken (Telegram sends several); each file is fetched with
``getFile`` and the file download URL into a temporary file under the channel's state dir,
which the core copies (and fsyncs) under the agent's cwd before the ingest returns.
Bots may fetch files up to 20 MB; a file over the core's ``[attachments] max_bytes``
(``ctx.max_attachment_bytes``) is refused before a byte is fetched (by the size Telegram
declares) and its download stops at that size.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge, ChannelContext

from agentbridge_telegram.api import BotApi, TelegramApiError

__all__ = ["BOT_DOWNLOAD_LIMIT", "FileRef", "fetch", "file_refs"]

#: the Bot API serves bots files up to this size (getFile refuses larger ones)
BOT_DOWNLOAD_LIMIT = 20 * 1024 * 1024


@dataclass(frozen=True)
class FileRef:
    """One file of a message, as the update names it (not yet fetched)."""

    file_id: str
    name: str
    media_type: str
    size: int | None


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def file_refs(msg: dict[str, Any]) -> tuple[FileRef, ...]:
    """The files of a ``message`` object; malformed parts are left out (never raises)."""
    refs: list[FileRef] = []
    mid = msg.get("message_id")
    photos = msg.get("photo")
    if isinstance(photos, list):
        sizes = [p for p in photos if isinstance(p, dict) and isinstance(p.get("file_id"), str)]
        if sizes:
            best = max(
                sizes,
                key=lambda p: (_size(p.get("file_size")) or 0, (p.get("width") or 0)),
            )
            size = _size(best.get("file_size"))
            refs.append(FileRef(best["file_id"], f"photo-{mid}.jpg", "image/jpeg", size))
    for kind, default_name, default_type in (
        ("document", f"document-{mid}", "application/octet-stream"),
        ("voice", f"voice-{mid}.ogg", "audio/ogg"),
        ("audio", f"audio-{mid}.mp3", "audio/mpeg"),
    ):
        item = msg.get(kind)
        if isinstance(item, dict) and isinstance(item.get("file_id"), str):
            name = item.get("file_name") if isinstance(item.get("file_name"), str) else None
            media = item.get("mime_type") if isinstance(item.get("mime_type"), str) else None
            size = _size(item.get("file_size"))
            refs.append(FileRef(item["file_id"], name or default_name, media or default_type, size))
    return tuple(refs)


def too_large(name: str, size: int, limit: int) -> AttachmentTooLarge:
    """The core's own refusal text (``agent/attachments.py``), before a byte is fetched."""
    return AttachmentTooLarge(
        f"Not delivered: the file {name!r} is {size / 1e6:.1f} MB; the limit is "
        f"{limit / 1e6:.1f} MB per file."
    )


@contextlib.contextmanager
def _scratch(state_dir: Path) -> Iterator[Path]:
    where = state_dir / "downloads"
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = where / secrets.token_hex(8)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def fetch(api: BotApi, refs: tuple[FileRef, ...], ctx: ChannelContext) -> Any:
    """Download every file into ``ctx.state_dir``; yields the ``Attachment`` list (temp files
    gone on exit).

    A file Telegram says is over the bot limit raises ``TelegramApiError``, one over the
    bridge's raises ``AttachmentTooLarge`` (the sender is told either way); a network failure
    raises ``TelegramNetworkError`` (the update comes back)."""
    cap = min(BOT_DOWNLOAD_LIMIT, ctx.max_attachment_bytes)
    with contextlib.ExitStack() as stack:
        out = []
        for ref in refs:
            if ref.size is not None and ref.size > BOT_DOWNLOAD_LIMIT:
                raise TelegramApiError("getFile", 400, f"{ref.name!r} is over the 20 MB bot limit")
            if ref.size is not None and ref.size > cap:
                raise too_large(ref.name, ref.size, cap)
            info = await api.call("getFile", file_id=ref.file_id)
            file_path = info.get("file_path") if isinstance(info, dict) else None
            if not isinstance(file_path, str):
                raise TelegramApiError("getFile", 400, f"no file_path for {ref.name!r}")
            target = stack.enter_context(_scratch(ctx.state_dir))
            try:
                size = await api.download(file_path, target, cap)
            except TelegramApiError as exc:
                if exc.status == 413 and cap < BOT_DOWNLOAD_LIMIT:  # it said less than it is
                    raise AttachmentTooLarge(
                        f"Not delivered: the file {ref.name!r} is over the bridge's limit of"
                        f" {cap / 1e6:.1f} MB per file."
                    ) from None
                raise
            out.append(Attachment(ref.name, ref.media_type, path=target, size=size))
        yield out
