"""The fake Bot API's uploads: ``sendPhoto`` / ``sendDocument`` as multipart, bytes kept.

Like Telegram: a photo over 10 MB or a document over 50 MB gets 413; the chat checks and
queued faults are the ones ``sendMessage`` has (``stall`` / ``reset``: the file is in the
chat, the answer is lost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

Params = dict[str, Any]
#: upload method → (form field, largest file the Bot API takes)
UPLOADS = {"sendPhoto": ("photo", 10 * 1024 * 1024), "sendDocument": ("document", 50 << 20)}


@dataclass
class SentFile:
    """One file the bot uploaded (``sendPhoto`` / ``sendDocument``), bytes and all."""

    chat_id: int | str
    message_id: int
    method: str
    name: str
    data: bytes
    media_type: str
    caption: str | None
    reply_to: int | None


@dataclass(frozen=True)
class _FormFile:
    name: str
    data: bytes
    media_type: str


class FakeUploads:
    """Mixed into ``FakeBotApi``, which provides the chat checks and the answer."""

    uploads: list[SentFile]
    _next_message: Any

    def _refusal(self, chat_id: Any) -> web.Response | str:
        raise NotImplementedError

    async def _answer(self, fault: str, request: web.Request, result: Any) -> web.Response:
        raise NotImplementedError

    async def _upload(self, method: str, params: Params, request: web.Request) -> web.Response:
        field_name, limit = UPLOADS[method]
        file = params.get(field_name)
        if not isinstance(file, _FormFile):
            return _error(400, f"Bad Request: there is no {field_name} in the request")
        if len(file.data) > limit:
            return _error(413, "Request Entity Too Large")
        fault = self._refusal(params.get("chat_id"))
        if isinstance(fault, web.Response):
            return fault
        reply = params.get("reply_parameters") or {}
        sent = SentFile(params["chat_id"], next(self._next_message), method, file.name,
                        file.data, file.media_type, params.get("caption"),
                        reply.get("message_id"))  # fmt: skip
        self.uploads.append(sent)
        return await self._answer(fault, request, {"message_id": sent.message_id})

    async def _m_sendPhoto(self, params: Params, request: web.Request) -> web.Response:
        return await self._upload("sendPhoto", params, request)

    async def _m_sendDocument(self, params: Params, request: web.Request) -> web.Response:
        return await self._upload("sendDocument", params, request)


async def read_form(request: web.Request) -> Params:
    """A multipart body as the Bot API reads it: files, JSON-encoded objects, numbers."""
    params: Params = {}
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is not None:
            kind = part.headers.get("Content-Type", "application/octet-stream")
            params[part.name] = _FormFile(part.filename, bytes(await part.read()), kind)
            continue
        value: Any = await part.text()
        if value[:1] in ("{", "["):
            value = json.loads(value)
        elif value.lstrip("-").isdigit():
            value = int(value)
        params[part.name] = value
    return params


def _error(status: int, description: str) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description}
    return web.json_response(body, status=status)
