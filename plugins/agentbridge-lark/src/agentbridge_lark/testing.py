"""A fake Lark on 127.0.0.1 for tests: the long connection and the OpenAPI the SDK calls.

The real lark-oapi talks to it unmodified, pointed here by its domain setting (the SDK
accepts ``http://127.0.0.1`` for tests): ``POST /callback/ws/endpoint`` hands out a ``ws://``
URL to this same server, which then speaks protobuf frames (``pbwire``): pings answered with
pongs, events pushed as data frames, and the SDK's reply frame read as the ack when its
payload says ``"code": 200``. Semantics kept where they matter: an event not acked is pushed
again on the next connection (Lark retries), posts land in the chat's message list (so
catch-up and reconcile see them), a ``uuid`` seen before posts nothing new.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from agentbridge_lark import pbwire

APP_ID = "cli_test_app"
APP_SECRET = "test-app-secret"
TOKEN = "t-fake-tenant-token"
BOT_OPEN_ID = "ou_bot"
TENANT = "tenant_1"
SERVICE_ID = 7


@dataclass
class PushedEvent:
    """One event as pushed, and what became of it."""

    event_id: str
    payload: dict[str, Any]
    pushes: int = 0
    ack_times: list[float] = field(default_factory=list)
    nacks: int = 0


class FakeLark:
    """``async with FakeLark() as fake: fake.user_message("oc_1", "ou_alice", "hi")``."""

    def __init__(self) -> None:
        self.chats: dict[str, str] = {}  # chat id → "p2p" | "group"
        self.messages: list[dict[str, Any]] = []  # every message, list-item shaped
        self.posted: list[dict[str, Any]] = []  # send requests Lark acted on
        self.send_requests = 0  # every send request that reached Lark, uuid repeats too
        self.reject_secret = False  # the app secret was reset: no token is valid any more
        self.reactions: list[tuple[str, str, str]] = []  # (op, message id, emoji or id)
        self.events: dict[str, PushedEvent] = {}
        self.faults: list[str] = []  # for the next sends, in order
        self.always_fail: str | None = None
        self.stall_seconds = 30.0
        self.connects = 0
        self.pings = 0
        self.endpoint_calls = 0
        self.uuids: dict[str, dict[str, Any]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._ids = itertools.count(1)
        self._last_ms = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeLark:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/callback/ws/endpoint", self._endpoint)
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_get("/open-apis/bot/v3/info", self._bot)
        app.router.add_post("/open-apis/im/v1/messages", self._create)
        app.router.add_get("/open-apis/im/v1/messages", self._list)
        app.router.add_post("/open-apis/im/v1/messages/{id}/reply", self._reply)
        app.router.add_post("/open-apis/im/v1/messages/{id}/reactions", self._react)
        app.router.add_delete("/open-apis/im/v1/messages/{id}/reactions/{rid}", self._unreact)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every socket and the server."""
        await self.disconnect_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What ``[channels.lark] domain`` is set to."""
        return f"http://127.0.0.1:{self.port}"

    def _now_ms(self) -> int:
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    # ------------------------------------------------------------------ the long connection

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.endpoint_calls += 1
        if body.get("AppID") != APP_ID or body.get("AppSecret") != APP_SECRET:
            return web.json_response({"code": 1000040345, "msg": "app credentials invalid"})
        url = f"ws://127.0.0.1:{self.port}/ws?device_id=dev{self.connects}&service_id={SERVICE_ID}"
        config = {
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
            "PingInterval": 2,
        }
        return web.json_response({"code": 0, "data": {"URL": url, "ClientConfig": config}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connects += 1
        for event in list(self.events.values()):  # Lark pushes what was never acked again
            if not event.ack_times:
                await self._push(event)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._frame(ws, pbwire.decode(msg.data))
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    async def _frame(self, ws: web.WebSocketResponse, frame: pbwire.Frame) -> None:
        if frame.method == pbwire.CONTROL and frame.header("type") == "ping":
            self.pings += 1
            pong = pbwire.Frame(
                service=frame.service, method=pbwire.CONTROL, headers=[("type", "pong")]
            )
            await ws.send_bytes(pbwire.encode(pong))
            return
        if frame.method != pbwire.DATA:
            return
        event = self.events.get(frame.header("message_id") or "")
        if event is None:
            return
        answer = json.loads(frame.payload or b"{}")
        if answer.get("code") == 200:
            event.ack_times.append(time.monotonic())
        else:
            event.nacks += 1

    async def _push(self, event: PushedEvent) -> None:
        frame = pbwire.Frame(
            seq_id=next(self._ids),
            service=SERVICE_ID,
            method=pbwire.DATA,
            headers=[
                ("type", "event"),
                ("message_id", event.event_id),
                ("sum", "1"),
                ("seq", "0"),
                ("trace_id", f"trace-{event.event_id}"),
            ],
            payload=json.dumps(event.payload).encode(),
        )
        for ws in list(self._sockets):
            event.pushes += 1
            await ws.send_bytes(pbwire.encode(frame))
            return

    async def redeliver(self, event_id: str) -> None:
        """Push an event again, as Lark does when its ack did not come in time."""
        await self._push(self.events[event_id])

    async def disconnect_all(self) -> None:
        """Drop every long connection (the SDK reconnects by itself)."""
        for ws in list(self._sockets):
            await ws.close()

    # ------------------------------------------------------------------ users' messages

    async def user_message(
        self,
        chat_id: str,
        open_id: str,
        text: str,
        *,
        chat_type: str = "p2p",
        mention_bot: bool = False,
        root_id: str | None = None,
        live: bool = True,
        user_id: str | None = None,
        tenant: str = TENANT,
    ) -> str:
        """A user writes: into the message list, and (``live``) pushed as an event."""
        self.chats.setdefault(chat_id, chat_type)
        mentions: list[dict[str, Any]] = []
        if mention_bot:
            text = f"@_user_1 {text}"
            mentions.append(
                {
                    "key": "@_user_1",
                    "id": BOT_OPEN_ID,
                    "id_type": "open_id",
                    "name": "agent",
                    "tenant_key": tenant,
                }
            )
        root = self._by_id(root_id) if root_id else None
        item = self._item(
            chat_id,
            text,
            {"id": open_id, "id_type": "open_id", "sender_type": "user", "tenant_key": tenant},
            "text",
            root,
        )
        item["mentions"] = mentions
        if live:
            event_id = f"ev_{next(self._ids)}"
            message = {
                "message_id": item["message_id"],
                "root_id": item.get("root_id"),
                "parent_id": item.get("parent_id"),
                "thread_id": item.get("thread_id"),
                "create_time": item["create_time"],
                "chat_id": chat_id,
                "chat_type": chat_type,
                "message_type": "text",
                "content": item["body"]["content"],
                "mentions": [dict(m, id={"open_id": m["id"]}) for m in mentions],
            }
            sender = {
                "sender_id": {"open_id": open_id, "user_id": user_id},
                "sender_type": "user",
                "tenant_key": tenant,
            }
            payload = {
                "schema": "2.0",
                "header": {
                    "event_id": event_id,
                    "event_type": "im.message.receive_v1",
                    "create_time": item["create_time"],
                    "token": "",
                    "app_id": APP_ID,
                    "tenant_key": tenant,
                },
                "event": {"sender": sender, "message": message},
            }
            self.events[event_id] = PushedEvent(event_id, payload)
            await self._push(self.events[event_id])
        return str(item["message_id"])

    def event_for(self, message_id: str) -> PushedEvent:
        """The event that carried ``message_id``."""
        return next(
            e
            for e in self.events.values()
            if e.payload["event"]["message"]["message_id"] == message_id
        )

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
        """The markdown of every post the bot made, oldest first."""
        out = []
        for post in self.posted:
            body = json.loads(post.get("content") or "{}")
            zh = body.get("zh_cn", {})
            out.append("".join(n.get("text", "") for p in zh.get("content", []) for n in p))
        return out
