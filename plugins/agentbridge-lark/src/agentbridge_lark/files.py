"""The files of an inbound Lark message → ``Attachment`` records for the ingest.

Each file is streamed (``resources.download``) into a temporary file under the channel's
state dir, which the core copies (and fsyncs) under the agent's cwd
(``.agentbridge/inbox/…``) before the ingest returns; the temporary files go on exit. A file
over the cap (``ctx.max_attachment_bytes`` when the core offers it, else the core's default)
is refused before its bytes are kept, with the core's kind of refusal text.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from agentbridge.agent.attachments import DEFAULT_MAX_BYTES
from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge, ChannelContext

from agentbridge_lark.api import LarkApi, LarkApiError
from agentbridge_lark.inbound import LarkMessage
from agentbridge_lark.resources import TooLarge, download

#: magic bytes → (extension, media type): Lark's image messages do not say which it is
_IMAGES = (
    (b"\x89PNG", ".png", "image/png"),
    (b"\xff\xd8", ".jpg", "image/jpeg"),
    (b"GIF8", ".gif", "image/gif"),
    (b"RIFF", ".webp", "image/webp"),
)


class FetchFailed(Exception):
    """Lark refused a download (``LarkApiError`` is frozen: it cannot cross the exit stack)."""

    def __init__(self, error: LarkApiError) -> None:
        super().__init__(str(error))
        self.status, self.code = error.status, error.code


def cap(ctx: ChannelContext) -> int:
    """The per-file limit: the core's, when its context says it."""
    value = getattr(ctx, "max_attachment_bytes", None)
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_BYTES


def _too_large(name: str, limit: int) -> AttachmentTooLarge:
    return AttachmentTooLarge(
        f"Not delivered: the file {name!r} is over the {limit / 1e6:.1f} MB limit per file."
    )


def _typed(name: str, media_type: str, path: Path) -> tuple[str, str]:
    if media_type != "image/*":
        return name, media_type
    with path.open("rb") as f:
        head = f.read(12)
    for magic, ext, media in _IMAGES:
        if head.startswith(magic):
            return name + ext, media
    return name, "application/octet-stream"


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
async def fetch(
    api: LarkApi, msg: LarkMessage, ctx: ChannelContext, timeout: float
) -> AsyncIterator[list[Attachment]]:
    """Download every file of ``msg``; yields the ``Attachment`` list.

    Raises ``AttachmentTooLarge`` (the sender is told), ``FetchFailed`` when Lark refuses,
    a ``requests``/``OSError`` when it cannot be reached (the message is read again)."""
    limit = cap(ctx)
    with contextlib.ExitStack() as stack:
        out: list[Attachment] = []
        for ref in msg.files:
            target = stack.enter_context(_scratch(ctx.state_dir))
            try:
                size = await download(
                    api, msg.message_id, ref.key, ref.kind, target, limit, timeout
                )
            except TooLarge:
                raise _too_large(ref.name, limit) from None
            except LarkApiError as exc:
                raise FetchFailed(exc) from None
            name, media = _typed(ref.name, ref.media_type, target)
            out.append(Attachment(name, media, path=target, size=size))
        yield out
