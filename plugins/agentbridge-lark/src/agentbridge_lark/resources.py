"""Files on Lark's OpenAPI: a message's image/file downloaded, an image or file uploaded.

Uploads go through the SDK's own resource methods (``im.v1.image.create`` /
``im.v1.file.create``: its multipart encoding, paths and field names). The download does not:
the SDK reads a whole body into memory, so ``download`` streams the message-resource
endpoint itself (same path and ``type`` query as ``GetMessageResourceRequest``, the tenant
token from the SDK's cache) into a file and stops at ``limit`` bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from urllib.parse import quote

import requests
from lark_oapi.api.im.v1 import (
    CreateFileRequest,
    CreateFileRequestBody,
    CreateImageRequest,
    CreateImageRequestBody,
)

from agentbridge_lark.api import TOKEN_INVALID, LarkApi, LarkApiError

IMAGE_MAX = 10 * 1024 * 1024  #: Lark takes images up to 10 MB
FILE_MAX = 30 * 1024 * 1024  #: and files up to 30 MB
IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/bmp"}
)
_CHUNK = 1 << 16


class TooLarge(Exception):
    """A download passed its limit; ``size`` is what Lark declared or what came so far."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def file_type(name: str, media_type: str) -> str:
    """Lark's ``file_type`` of an upload: its named kinds, else ``stream``."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in ("opus", "mp4", "pdf", "doc", "xls", "ppt"):
        return ext
    if ext in ("docx", "xlsx", "pptx"):
        return ext[:-1]
    return "mp4" if media_type == "video/mp4" else "stream"


async def upload_image(api: LarkApi, data: bytes) -> str:
    """``POST /open-apis/im/v1/images`` (``image_type=message``): the ``image_key``."""
    body = CreateImageRequestBody.builder().image_type("message").image(io.BytesIO(data)).build()
    req = CreateImageRequest.builder().request_body(body).build()
    found = await api.call(req, api.client.im.v1.image.create)
    return str(found.get("image_key") or "")


async def upload_file(api: LarkApi, data: bytes, name: str, media_type: str) -> str:
    """``POST /open-apis/im/v1/files``: the ``file_key``."""
    body = (
        CreateFileRequestBody.builder()
        .file_type(file_type(name, media_type))
        .file_name(name)
        .file(io.BytesIO(data))
        .build()
    )
    req = CreateFileRequest.builder().request_body(body).build()
    found = await api.call(req, api.client.im.v1.file.create)
    return str(found.get("file_key") or "")


def _download(
    api: LarkApi, message_id: str, key: str, kind: str, target: Path, limit: int, timeout: float
) -> int:
    url = f"{api.domain}/open-apis/im/v1/messages/{quote(message_id)}/resources/{quote(key)}"
    for attempt in (1, 2):
        headers = {"Authorization": f"Bearer {api.tenant_token()}"}
        with requests.get(
            url, params={"type": kind}, headers=headers, stream=True, timeout=timeout
        ) as resp:
            if resp.status_code != 200:
                try:
                    body = json.loads(resp.content or b"{}")
                except ValueError:
                    body = {}
                code = int(body.get("code", -1)) if isinstance(body, dict) else -1
                if code in TOKEN_INVALID and attempt == 1:
                    api.drop_token()
                    continue
                msg = str(body.get("msg", "")) if isinstance(body, dict) else ""
                raise LarkApiError(resp.status_code, code, msg or "download refused")
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise TooLarge(int(declared))
            size = 0
            with target.open("wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(size)
                    out.write(chunk)
            return size
    raise LarkApiError(400, 99991663, "tenant token refused twice")


async def download(
    api: LarkApi, message_id: str, key: str, kind: str, target: Path, limit: int, timeout: float
) -> int:
    """``GET /open-apis/im/v1/messages/:message_id/resources/:file_key?type=image|file``
    into ``target``; its size. Raises ``TooLarge`` past ``limit``, ``LarkApiError`` when
    Lark refuses, ``requests`` errors when it cannot be reached."""
    return await asyncio.to_thread(_download, api, message_id, key, kind, target, limit, timeout)
