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

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from agentbridge_lark import pbwire
from agentbridge_lark.fake_openapi import (
    APP_ID,
    APP_SECRET,
    BOT_OPEN_ID,
    TENANT,
    TOKEN,
    OpenApi,
)

__all__ = ["APP_ID", "APP_SECRET", "BOT_OPEN_ID", "TENANT", "TOKEN", "FakeLark", "PushedEvent"]
SERVICE_ID = 7


@dataclass
class PushedEvent:
    """One event as pushed, and what became of it."""

    event_id: str
    payload: dict[str, Any]
    pushes: int = 0
    ack_times: list[float] = field(default_factory=list)
    nacks: int = 0
    answer: dict[str, Any] | None = None  # what a callback's ack carried


class FakeLark(OpenApi):
    """``async with FakeLark() as fake: fake.user_message("oc_1", "ou_alice", "hi")``."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, PushedEvent] = {}
        self.connects = 0
        self.pings = 0
        self.endpoint_calls = 0
        self._sockets: list[web.WebSocketResponse] = []
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
        self.routes(app)
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
            if answer.get("data"):  # a callback's answer (the toast), base64 JSON
                event.answer = json.loads(base64.b64decode(answer["data"]))
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
        image: bool = False,
        msg_type: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> str:
        """A user writes (or, ``image``, sends a sticker-like picture Lark has no file for;
        ``msg_type``/``content``: any message, e.g. ``image`` with an ``add_resource`` key):
        into the message list, and (``live``) pushed as an event."""
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
            msg_type or ("sticker" if image else "text"),
            root,
            json.dumps(content) if content is not None else (
                json.dumps({"file_key": "sticker_1"}) if image else None
            ),
        )  # fmt: skip
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
                "message_type": item["msg_type"],
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

    async def click(self, card_id: str, label: str, open_id: str, tenant: str = TENANT) -> str:
        """A user clicks the button ``label`` of the bot's card: a ``card.action.trigger``
        callback pushed over the long connection; the callback's event id."""
        card = next(m for m in self.messages if m["message_id"] == card_id)
        elements = json.loads(card["body"]["content"])["elements"]
        buttons = [b for e in elements if e.get("tag") == "action" for b in e["actions"]]
        [button] = [b for b in buttons if b["text"]["content"] == label]
        event_id = f"ev_{next(self._ids)}"
        payload = {
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": "card.action.trigger",
                "create_time": str(self._now_ms()),
                "token": "",
                "app_id": APP_ID,
                "tenant_key": tenant,
            },
            "event": {
                "operator": {"tenant_key": tenant, "open_id": open_id},
                "token": "c-token",
                "action": {"tag": "button", "value": button["value"]},
                "host": "im_message",
                "context": {"open_message_id": card_id, "open_chat_id": card["chat_id"]},
            },
        }
        self.events[event_id] = PushedEvent(event_id, payload)
        await self._push(self.events[event_id])
        return event_id
