"""The fake Lark's files and edits (a part of ``fake_openapi.OpenApi``), as lark-oapi calls
them: ``POST im/v1/images`` / ``im/v1/files`` (multipart), ``GET
im/v1/messages/:id/resources/:key?type=image|file`` (only a key that message carries) and
``PUT im/v1/messages/:id`` (the bot's own text/post messages only; each edit recorded)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from aiohttp import BodyPartReader, web

Error = Any  # OpenApi._error's shape: (status, code, msg) → web.Response


class FakeFiles:
    """Uploads, downloads and edits; ``OpenApi`` provides the store and the checks."""

    messages: list[dict[str, Any]]
    _file_ids = itertools.count(1)

    def _init_files(self) -> None:
        self.resources: dict[str, bytes] = {}  # image_key / file_key → bytes
        self.uploads: list[dict[str, Any]] = []  # what the bot uploaded (kind, name, size…)
        self.downloads: list[tuple[str, str, str]] = []  # (message id, key, type) fetched
        self.edits: list[tuple[float, str, str]] = []  # (monotonic, message id, content)
        self.upload_faults: list[str] = []  # "500", "too_large": for the next uploads

    def _authorised(self, request: web.Request) -> bool:
        raise NotImplementedError

    def _by_id(self, message_id: str | None) -> dict[str, Any] | None:
        raise NotImplementedError

    @staticmethod
    def _error(status: int, code: int, msg: str, **headers: str) -> web.Response:
        raise NotImplementedError

    def file_routes(self, app: web.Application) -> None:
        """Add the file and edit routes to ``app``."""
        app.router.add_post("/open-apis/im/v1/images", self._upload_image)
        app.router.add_post("/open-apis/im/v1/files", self._upload_file)
        app.router.add_get("/open-apis/im/v1/messages/{id}/resources/{key}", self._resource)
        app.router.add_put("/open-apis/im/v1/messages/{id}", self._update)

    def add_resource(self, data: bytes, kind: str = "file") -> str:
        """Store a file a user's message will name; its key."""
        key = f"{'img' if kind == 'image' else 'file'}_v2_{next(self._file_ids)}"
        self.resources[key] = data
        return key

    async def _form(self, request: web.Request) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                return fields
            if isinstance(part, BodyPartReader) and part.name is not None:
                data = await part.read()
                raw = bytes(data)  # the SDK names no filename: the file fields stay bytes
                fields[part.name] = raw if part.name in ("image", "file") else raw.decode()

    async def _upload(self, request: web.Request, kind: str, field: str) -> web.Response:
        if not self._authorised(request):
            return self._error(400, 99991663, "Invalid access token")
        if not request.content_type.startswith("multipart/form-data"):
            return self._error(400, 99992402, "multipart/form-data expected")
        fault = self.upload_faults.pop(0) if self.upload_faults else None
        if fault == "500":
            return self._error(500, 1, "internal error")
        if fault == "too_large":
            return self._error(400, 234006, "The file size exceeds the limit")
        form = await self._form(request)
        data = form.get(field)
        if not isinstance(data, bytes | bytearray) or not data:
            return self._error(400, 234001, f"{field} missing")
        key = self.add_resource(bytes(data), kind)
        record = {k: v for k, v in form.items() if not isinstance(v, bytes | bytearray)}
        self.uploads.append(dict(record, kind=kind, key=key, size=len(data)))
        return web.json_response({"code": 0, "msg": "success", "data": {f"{kind}_key": key}})

    async def _upload_image(self, request: web.Request) -> web.Response:
        return await self._upload(request, "image", "image")

    async def _upload_file(self, request: web.Request) -> web.Response:
        return await self._upload(request, "file", "file")

    async def _resource(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(400, 99991663, "Invalid access token")
        message = self._by_id(request.match_info["id"])
        key, kind = request.match_info["key"], request.query.get("type", "")
        if kind not in ("image", "file"):
            return self._error(400, 234001, "Invalid request param: type")
        content = (message or {}).get("body", {}).get("content") or ""
        if message is None or key not in content or key not in self.resources:
            return self._error(400, 234003, "File not in msg.")
        self.downloads.append((request.match_info["id"], key, kind))
        return web.Response(body=self.resources[key], content_type="application/octet-stream")

    async def _update(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(400, 99991663, "Invalid access token")
        body = await request.json()
        message = self._by_id(request.match_info["id"])
        if message is None or message.get("sender", {}).get("sender_type") != "app":
            return self._error(400, 230071, "The operator is not the message sender")
        if body.get("msg_type") not in ("text", "post") or message["msg_type"] != body["msg_type"]:
            return self._error(400, 230001, "msg_type cannot be changed")
        message["body"]["content"] = body.get("content") or ""
        self.edits.append((time.monotonic(), message["message_id"], message["body"]["content"]))
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    def post_text(self, content: str) -> str:
        """The markdown of one post's content."""
        zh = json.loads(content or "{}").get("zh_cn", {})
        return "".join(n.get("text", "") for p in zh.get("content", []) for n in p)
