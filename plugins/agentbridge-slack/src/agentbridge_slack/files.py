"""Files in and out: ``url_private`` downloads with the bot token, uploads in three steps.

In: the ``files`` of a message event are fetched from ``url_private_download`` with the bot
token into scratch files under the channel's state dir; the core copies and fsyncs them under
the agent's cwd before the ingest returns, and only then is the envelope acked. The token goes
only to Slack's file host or the host of ``base_url`` (a fake in tests): a file URL anywhere
else is refused, never fetched with it.

Out (the relay's ``deliver_file``: the relay has checked the agent's file, its size against
``max_upload_bytes``, and read it): ``files.getUploadURLExternal`` → the bytes POSTed to that
URL → ``files.completeUploadExternal`` — what the SDK's ``files_upload_v2`` does, done step by
step so each failure gets its class: the first two post nothing anyone sees (transient, safe
to retry); only the last one may have posted (a timeout there is unknown, and reconciled by
the file's name, ``uploads.py``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from agentbridge.plugin.protocols import Attachment, DeliveryError, ErrorClass, OutFile
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack.errors import to_delivery_error

__all__ = ["FileRefused", "SlackFile", "fetch", "file_refs", "upload"]

_CHUNK = 256 * 1024


@dataclass(frozen=True)
class SlackFile:
    """One file of a message, as the event names it (not fetched yet)."""

    id: str
    name: str
    media_type: str
    size: int | None
    url: str | None


class FileRefused(Exception):
    """This file cannot come in (too large, no URL, a login page): ``str()`` tells the sender.
    The message is not stored; the envelope is acked (sending it again cannot help)."""


def file_refs(event: dict[str, Any]) -> tuple[SlackFile, ...]:
    """The files of a message event; malformed entries are left out (never raises)."""
    out: list[SlackFile] = []
    for item in event.get("files") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        url = item.get("url_private_download") or item.get("url_private")
        size = item.get("size")
        name = item.get("name") or item.get("title") or item["id"]
        out.append(
            SlackFile(
                id=item["id"],
                name=str(name),
                media_type=str(item.get("mimetype") or "application/octet-stream"),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                url=url if isinstance(url, str) else None,
            )
        )
    return tuple(out)


def _mb(size: int) -> str:
    """5 B, 5.0 kB, 5.0 MB: a limit of 0.0 MB would say nothing."""
    if size < 1000:
        return f"{size} B"
    return f"{size / 1e3:.1f} kB" if size < 1_000_000 else f"{size / 1e6:.1f} MB"


def too_large(name: str, size: int, limit: int) -> FileRefused:
    """The refusal for a file over ``max_download_bytes``."""
    return FileRefused(
        f"Not delivered: the file {name!r} is {_mb(size)}; the limit is {_mb(limit)} per file."
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


async def _download(
    session: aiohttp.ClientSession, item: SlackFile, token: str, target: Path, limit: int
) -> int:
    assert item.url is not None
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(item.url, headers=headers) as answer:
        if answer.status >= 500 or answer.status == 429:
            raise aiohttp.ClientResponseError(
                answer.request_info, (), status=answer.status, message="file download failed"
            )  # Slack's trouble: unacked, the envelope comes back
        if answer.status != 200:
            raise FileRefused(
                f"Not delivered: Slack refused the file {item.name!r} (HTTP {answer.status})."
            )
        if answer.content_type == "text/html" and "html" not in item.media_type:
            # Slack's answer to a token without files:read is its sign-in page, with a 200
            raise FileRefused(
                f"Not delivered: the file {item.name!r} could not be read (the app needs the "
                "files:read scope)."
            )
        written = 0
        with target.open("wb") as out:
            async for chunk in answer.content.iter_chunked(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise too_large(item.name, written, limit)
                out.write(chunk)
        return written


@contextlib.asynccontextmanager
async def fetch(
    files: tuple[SlackFile, ...],
    token: str,
    hosts: frozenset[str],
    state_dir: Path,
    limit: int,
    timeout: float,
) -> AsyncIterator[list[Attachment]]:
    """Download every file; yields the ``Attachment`` list (scratch files gone on exit).

    Raises ``FileRefused`` (tell the sender) or a network error (the envelope comes back)."""
    with contextlib.ExitStack() as stack:
        out: list[Attachment] = []
        if files:
            client_timeout = aiohttp.ClientTimeout(total=max(timeout, 1.0) * 3)
            async with aiohttp.ClientSession(timeout=client_timeout) as session:
                for item in files:
                    if item.size is not None and item.size > limit:
                        raise too_large(item.name, item.size, limit)
                    if item.url is None or urlsplit(item.url).netloc not in hosts:
                        raise FileRefused(
                            f"Not delivered: the file {item.name!r} has no download link."
                        )
                    target = stack.enter_context(_scratch(state_dir))
                    size = await _download(session, item, token, target, limit)
                    out.append(Attachment(item.name, item.media_type, path=target, size=size))
        yield out


async def upload(
    web: AsyncWebClient, file: OutFile, channel: str, thread: str | None, caption: str
) -> str:
    """Post one file (checked and read by the relay) into the DM or thread; return its file
    id. Raises ``DeliveryError`` (the first two steps) or the SDK's error (the last)."""
    try:
        got = await web.files_getUploadURLExternal(filename=file.name, length=len(file.data))
        url, file_id = str(got.get("upload_url")), str(got.get("file_id"))
        timeout = aiohttp.ClientTimeout(total=max(float(web.timeout), 1.0) * 3)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=file.data) as answer,
        ):
            if answer.status != 200:
                raise DeliveryError(
                    f"slack: the upload answered HTTP {answer.status}: not posted",
                    ErrorClass.TRANSIENT,
                )
    except SlackApiError as exc:
        raise to_delivery_error(exc) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # nothing visible yet
        raise DeliveryError(
            f"slack: the upload failed ({type(exc).__name__}): not posted", ErrorClass.TRANSIENT
        ) from None
    await web.files_completeUploadExternal(
        files=[{"id": file_id, "title": file.name}],
        channel_id=channel,
        thread_ts=thread,
        initial_comment=caption or None,
    )
    return file_id
