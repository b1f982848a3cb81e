"""The OpenAPI half of the fake Lark (``testing.FakeLark``): token, bot info, create/reply,
message list, reactions (files and edits: ``fake_files``), with the faults the delivery tests need.

Posts land in the chat's message list (so catch-up and reconcile see them); a ``uuid`` seen
before posts nothing new and answers with the first message, as Lark does within an hour.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web

from agentbridge_lark.fake_files import FakeFiles

APP_ID = "cli_test_app"
APP_SECRET = "test-app-secret"
TOKEN = "t-fake-tenant-token"
BOT_OPEN_ID = "ou_bot"
TENANT = "tenant_1"


class OpenApi(FakeFiles):
    """The REST routes and the message store; ``FakeLark`` adds the long connection."""

    def __init__(self) -> None:
        self.chats: dict[str, str] = {}  # chat id → "p2p" | "group"
        self.messages: list[dict[str, Any]] = []  # every message, list-item shaped
        self.posted: list[dict[str, Any]] = []  # send requests Lark acted on
        self.send_requests = 0  # every send request that reached Lark, uuid repeats too
        self.reject_secret = False  # the app secret was reset: no token is valid any more
        self.reactions: list[tuple[str, str, str]] = []  # (op, message id, emoji or id)
        self.faults: list[str] = []  # for the next sends, in order
        self.always_fail: str | None = None
        self.stall_seconds = 30.0
        self.uuids: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._last_ms = 0
        self._init_files()

    def routes(self, app: web.Application) -> None:
        """Add the OpenAPI routes to ``app``."""
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_get("/open-apis/bot/v3/info", self._bot)
        app.router.add_post("/open-apis/im/v1/messages", self._create)
        app.router.add_get("/open-apis/im/v1/messages", self._list)
        app.router.add_post("/open-apis/im/v1/messages/{id}/reply", self._reply)
        app.router.add_post("/open-apis/im/v1/messages/{id}/reactions", self._react)
        app.router.add_delete("/open-apis/im/v1/messages/{id}/reactions/{rid}", self._unreact)
        self.file_routes(app)

    def _now_ms(self) -> int:
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    def _by_id(self, message_id: str | None) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["message_id"] == message_id), None)

    def _item(
        self,
        chat_id: str,
        text: str,
        sender: dict[str, Any],
        msg_type: str,
        root: dict[str, Any] | None,
        content: str | None = None,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "message_id": f"om_{next(self._ids)}",
            "chat_id": chat_id,
            "msg_type": msg_type,
            "create_time": str(self._now_ms()),
            "deleted": False,
            "sender": sender,
            "body": {"content": content or json.dumps({"text": text})},
        }
        if root is not None:
            if not root.get("thread_id"):
                root["thread_id"] = f"omt_{next(self._ids)}"
            item.update(
                root_id=root["message_id"],
                parent_id=root["message_id"],
                thread_id=root["thread_id"],
            )
        self.messages.append(item)
        return item

    # ------------------------------------------------------------------ the OpenAPI

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (
            body.get("app_id") != APP_ID
            or body.get("app_secret") != APP_SECRET
            or (self.reject_secret)
        ):
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        return web.json_response({"code": 0, "tenant_access_token": TOKEN, "expire": 7200})

    def _authorised(self, request: web.Request) -> bool:
        wanted = f"Bearer {TOKEN}"
        return not self.reject_secret and request.headers.get("Authorization") == wanted

    @staticmethod
    def _error(status: int, code: int, msg: str, **headers: str) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)

    async def _bot(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(400, 99991663, "Invalid access token")
        return web.json_response(
            {"code": 0, "msg": "ok", "bot": {"open_id": BOT_OPEN_ID, "app_name": "agent"}}
        )

    async def _send(
        self, request: web.Request, chat_id: str, root: dict[str, Any] | None
    ) -> web.Response:
        body = await request.json()
        if not self._authorised(request):
            return self._error(400, 99991663, "Invalid access token")
        self.send_requests += 1
        fault = self.faults.pop(0) if self.faults else self.always_fail
        if fault == "429":
            return self._error(
                429, 99991400, "request trigger frequency limit", **{"x-ogw-ratelimit-reset": "3"}
            )
        if fault == "not_in_chat":
            return self._error(400, 230002, "Bot is not in the chat")
        if fault == "bad_token":
            return self._error(400, 99991663, "Invalid access token")
        if chat_id not in self.chats:
            return self._error(400, 230001, "invalid receive_id")
        uuid = body.get("uuid")
        if uuid and uuid in self.uuids:
            return web.json_response({"code": 0, "data": self.uuids[uuid]})
        sender = {"id": APP_ID, "id_type": "app_id", "sender_type": "app", "tenant_key": TENANT}
        item = self._item(
            chat_id, "", sender, body.get("msg_type", "text"), root, body.get("content")
        )
        self.posted.append(
            dict(body, chat_id=chat_id, root_id=item.get("root_id"), message_id=item["message_id"])
        )
        if uuid:
            self.uuids[uuid] = item
        if fault == "stall":  # acted on, then the answer never comes
            await asyncio.sleep(self.stall_seconds)
        if fault == "reset":  # acted on, then the connection drops
            assert request.transport is not None
            request.transport.abort()
        return web.json_response({"code": 0, "msg": "success", "data": item})

    async def _create(self, request: web.Request) -> web.Response:
        if request.query.get("receive_id_type") != "chat_id":
            return self._error(400, 99992402, "receive_id_type must be chat_id here")
        body = await request.json()
        return await self._send(request, str(body.get("receive_id")), None)

    async def _reply(self, request: web.Request) -> web.Response:
        root = self._by_id(request.match_info["id"])
        if root is None:
            return self._error(400, 230011, "The message was withdrawn")
        return await self._send(request, root["chat_id"], root)

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(400, 99991663, "Invalid access token")
        kind, ident = request.query.get("container_id_type"), request.query.get("container_id")
        if kind == "chat":
            if ident not in self.chats:
                return self._error(400, 230002, "Bot is not in the chat")
            start = int(request.query.get("start_time") or 0) * 1000
            found = [
                m
                for m in self.messages
                if m["chat_id"] == ident and not m.get("root_id") and int(m["create_time"]) >= start
            ]
        else:
            found = [m for m in self.messages if m.get("thread_id") == ident]
        offset = int(request.query.get("page_token") or 0)
        size = int(request.query.get("page_size") or 20)
        page = found[offset : offset + size]
        more = offset + size < len(found)
        data = {"items": page, "has_more": more, "page_token": str(offset + size) if more else ""}
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _react(self, request: web.Request) -> web.Response:
        body = await request.json()
        emoji = body["reaction_type"]["emoji_type"]
        self.reactions.append(("add", request.match_info["id"], emoji))
        return web.json_response(
            {
                "code": 0,
                "data": {
                    "reaction_id": f"r_{next(self._ids)}",
                    "reaction_type": {"emoji_type": emoji},
                },
            }
        )

    async def _unreact(self, request: web.Request) -> web.Response:
        self.reactions.append(("delete", request.match_info["id"], request.match_info["rid"]))
        return web.json_response({"code": 0, "data": {}})

    def post_texts(self) -> list[str]:
        """The markdown of every post (or card) the bot made, oldest first."""
        out = []
        for post in self.posted:
            body = json.loads(post.get("content") or "{}")
            if post.get("msg_type") == "interactive":
                els = body.get("elements", [])
                out.append("".join(e["content"] for e in els if e.get("tag") == "markdown"))
                continue
            zh = body.get("zh_cn", {})
            out.append("".join(n.get("text", "") for p in zh.get("content", []) for n in p))
        return out
