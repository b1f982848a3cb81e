"""A fake Discord on 127.0.0.1 speaking the real wire protocol, for tests of the real discord.py.

REST under ``/api/v10`` (``/users/@me``, ``/oauth2/applications/@me``, ``/gateway/bot``,
channel messages with ``after=`` paging and ``enforce_nonce``, reactions) and the gateway
WebSocket at ``/gateway``: HELLO (op 10), heartbeats (op 1 → 11), IDENTIFY (op 2) → READY,
dispatches with sequence numbers, RESUME (op 6) → replay + RESUMED, RECONNECT (op 7).
discord.py asks for ``compress=zlib-stream``; the fake answers in kind (binary frames of one
zlib stream, each flushed with Z_SYNC_FLUSH), and in plain JSON text for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import discord
from aiohttp import BodyPartReader, WSMsgType, web

from agentbridge_discord.fake_interactions import FakeInteractions
from agentbridge_discord.fake_payloads import (
    BOT_ID,
    FLAG_MESSAGE_CONTENT,
    FLAG_MESSAGE_CONTENT_LIMITED,
    INTENT_MESSAGE_CONTENT,
    Callback,
    Sent,
    as_json,
    error,
    public,
    user,
)

__all__ = ["BOT_ID", "Callback", "FakeDiscord", "Sent"]


@dataclass
class Session:
    """One gateway session (survives a dropped socket until invalidated)."""

    session_id: str
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


class FakeDiscord(FakeInteractions):
    """Start with ``async with FakeDiscord() as fake``; drive it with the methods below."""

    def __init__(self) -> None:
        self.token = "fake-" + secrets.token_hex(12)
        self.history: dict[int, list[dict[str, Any]]] = {}
        self.sent: list[Sent] = []
        self.edits: list[tuple[float, int, int, str]] = []  # (monotonic, channel, message, text)
        self.reactions: list[tuple[str, int, int, str]] = []  # (PUT/DELETE, chan, msg, emoji)
        self.ops: list[int | None] = []  # gateway opcodes received, in order
        self.identify: list[dict[str, Any]] = []
        self.compression: list[str | None] = []  # what each gateway connection asked for
        self.fail_next: list[str] = []
        self.always_fail: str | None = None
        self.hang_seconds = 30.0
        self.session: Session | None = None
        self.sockets: list[web.WebSocketResponse] = []
        self._ws_zlib: dict[int, Any] = {}
        self._next_id = discord.utils.time_snowflake(discord.utils.utcnow())
        self._runner: web.AppRunner | None = None
        self.port = 0
        #: what the portal says (``/oauth2/applications/@me``, READY): the content intent on
        self.app_flags = FLAG_MESSAGE_CONTENT
        self.interactions_endpoint: str | None = None  # set: Discord sends clicks there
        self.upload_limit = 10 * 1024 * 1024  # a larger multipart file gets Discord's 413
        self._init_interactions()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        api = "/api/v10"
        app.router.add_get(f"{api}/users/@me", self._me)
        app.router.add_get(f"{api}/oauth2/applications/@me", self._app)
        app.router.add_get(f"{api}/gateway/bot", self._gateway_bot)
        app.router.add_get(f"{api}/gateway", self._gateway_bot)
        app.router.add_post(f"{api}/channels/{{cid}}/messages", self._create)
        app.router.add_get(f"{api}/channels/{{cid}}/messages", self._list)
        app.router.add_patch(f"{api}/channels/{{cid}}/messages/{{mid}}", self._edit)
        reaction = f"{api}/channels/{{cid}}/messages/{{mid}}/reactions/{{emoji}}/@me"
        app.router.add_put(reaction, self._react)
        app.router.add_delete(reaction, self._react)
        app.router.add_get("/gateway", self._gateway)
        self._interaction_routes(app, api)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def settings_table(self) -> dict[str, Any]:
        """The ``[channels.discord]`` keys that point discord.py here."""
        return {"api_base_url": self.api_base_url, "gateway_url": self.gateway_url}

    # ------------------------------------------------------------------ driving

    def new_id(self) -> int:
        self._next_id += 1 << 22  # one millisecond later: ids sort by time, as Discord's
        return self._next_id

    def message(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        guild_id: int | None = None,
        mentions: tuple[int, ...] = (),
        bot: bool = False,
        message_id: int | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A message payload (stored in the channel's history unless it is there already)."""
        mid = message_id or self.new_id()
        for old in self.history.get(channel_id, []):
            if int(old["id"]) == mid:
                return dict(old, guild_id=str(guild_id)) if guild_id else dict(old)
        payload = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": user(author_id, bot=bot),
            "content": content,
            "timestamp": discord.utils.snowflake_time(mid).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [user(m, bot=m == BOT_ID) for m in mentions],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 0,
        }
        self.history.setdefault(channel_id, []).append(payload)
        return dict(payload, guild_id=str(guild_id)) if guild_id else dict(payload)

    async def post(self, channel_id: int, author_id: int, content: str, **kw: Any) -> int:
        """A user posts: stored, then dispatched as MESSAGE_CREATE. Returns the message id."""
        payload = self.message(channel_id, author_id, content, **kw)
        await self.dispatch("MESSAGE_CREATE", payload)
        return int(payload["id"])

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send one dispatch (op 0) with the next sequence number to the live socket(s)."""
        if self.session is None:
            return
        self.session.seq += 1
        frame = {"op": 0, "t": event, "s": self.session.seq, "d": data}
        self.session.events.append(frame)
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await self._send(ws, frame)

    async def reconnect(self) -> None:
        """Op 7: Discord asks the client to reconnect (and resume)."""
        for ws in list(self.sockets):
            await self._send(ws, {"op": 7, "d": None})

    async def drop(self) -> None:
        """Close every socket without a word (a network cut): the client resumes."""
        for ws in list(self.sockets):
            await ws.close(code=4000)

    def reply_texts(self) -> list[str]:
        return [s.content for s in self.sent]

    # ------------------------------------------------------------------ REST

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise web.HTTPUnauthorized(
                text=json.dumps({"message": "401: Unauthorized", "code": 0}),
                headers={"Content-Type": "application/json"},
            )

    async def _me(self, request: web.Request) -> web.Response:
        self._auth(request)
        return as_json(user(BOT_ID, bot=True))

    async def _app(self, request: web.Request) -> web.Response:
        self._auth(request)
        return as_json(
            {
                "id": str(BOT_ID),
                "name": "fake",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": user(1),
                "verify_key": "0" * 64,
                "flags": self.app_flags,
                "interactions_endpoint_url": self.interactions_endpoint,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        self._auth(request)
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return as_json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self._auth(request)
        cid = int(request.match_info["cid"])
        body, uploads = await _body(request)
        mode = self.fail_next.pop(0) if self.fail_next else self.always_fail
        if mode in ("429", "429_long"):
            retry = 0.3 if mode == "429" else 45.0
            return as_json(
                {"message": "You are being rate limited.", "retry_after": retry, "global": False},
                status=429,
                headers={"Retry-After": str(retry), "Via": "1.1 google"},
            )
        if mode == "403":
            return error(403, 50001, "Missing Access")
        if mode == "404":
            return error(404, 10003, "Unknown Channel")
        if any(len(data) > self.upload_limit for _, data in uploads):
            return error(413, 40005, "Request entity too large")
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            for old in self.history.get(cid, []):
                if old.get("_nonce") == nonce and int(old["author"]["id"]) == BOT_ID:
                    return as_json(public(old))  # Discord's dedup: no second one
        payload = self.message(cid, BOT_ID, str(body.get("content") or ""), bot=True)
        stored = self.history[cid][-1]
        stored["_nonce"] = nonce
        stored["components"] = body.get("components") or []
        stored["attachments"] = [self.attachment(cid, n, d) for n, d in uploads]
        ref = body.get("message_reference") or {}
        reply_to = int(ref["message_id"]) if ref.get("message_id") else None
        self.sent.append(
            Sent(cid, payload["content"], nonce, reply_to, int(payload["id"]), uploads,
                 stored["components"])
        )  # fmt: skip
        answer = dict(public(stored), nonce=nonce)
        await self.dispatch("MESSAGE_CREATE", answer)
        if mode == "timeout":
            await asyncio.sleep(self.hang_seconds)
        if mode == "reset":
            assert request.transport is not None
            request.transport.close()  # acted, then the answer is lost
            return web.Response()
        return as_json(answer)

    async def _edit(self, request: web.Request) -> web.Response:
        """PATCH a message of the bot: its new content, recorded in ``edits`` with the time."""
        self._auth(request)
        cid, mid = int(request.match_info["cid"]), int(request.match_info["mid"])
        body, _ = await _body(request)
        for stored in self.history.get(cid, []):
            if int(stored["id"]) == mid and int(stored["author"]["id"]) == BOT_ID:
                stored["content"] = str(body.get("content") or stored["content"])
                self.edits.append((time.monotonic(), cid, mid, stored["content"]))
                return as_json(public(stored))
        return error(404, 10008, "Unknown Message")

    async def _list(self, request: web.Request) -> web.Response:
        self._auth(request)
        cid = int(request.match_info["cid"])
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "50"))
        rows = sorted(
            (m for m in self.history.get(cid, []) if int(m["id"]) > after),
            key=lambda m: int(m["id"]),
        )[:limit]
        # newest first, like Discord; history payloads carry no guild id and no nonce
        return as_json([public(m) for m in reversed(rows)])

    async def _react(self, request: web.Request) -> web.Response:
        self._auth(request)
        info = request.match_info
        self.reactions.append((request.method, int(info["cid"]), int(info["mid"]), info["emoji"]))
        return web.Response(status=204)

    # ------------------------------------------------------------------ gateway

    async def _send(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        text = json.dumps(frame)
        packer = self._ws_zlib.get(id(ws))
        if packer is None:
            await ws.send_str(text)
        else:
            await ws.send_bytes(packer.compress(text.encode()) + packer.flush(zlib.Z_SYNC_FLUSH))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.compression.append(request.query.get("compress"))
        if request.query.get("compress") == "zlib-stream":
            self._ws_zlib[id(ws)] = zlib.compressobj()
        self.sockets.append(ws)
        try:
            await self._send(ws, {"op": 10, "d": {"heartbeat_interval": 41250}})
            async for raw in ws:
                if raw.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(raw.data)
                await self._on_frame(ws, frame)
        finally:
            self.sockets.remove(ws)
            self._ws_zlib.pop(id(ws), None)
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d") or {}
        self.ops.append(op)
        if op == 1:
            await self._send(ws, {"op": 11})
        elif op == 2:
            if data.get("token") != self.token:
                await ws.close(code=4004)
                return
            self.identify.append(data)
            content = FLAG_MESSAGE_CONTENT | FLAG_MESSAGE_CONTENT_LIMITED
            if int(data.get("intents") or 0) & INTENT_MESSAGE_CONTENT and not (
                self.app_flags & content
            ):
                await ws.close(code=4014)  # Disallowed intent(s), as Discord closes
                return
            self.session = Session(secrets.token_hex(8))
            ready = {
                "v": 10,
                "user": user(BOT_ID, bot=True),
                "guilds": [],
                "session_id": self.session.session_id,
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(BOT_ID), "flags": self.app_flags},
            }
            self.session.seq += 1
            await self._send(ws, {"op": 0, "t": "READY", "s": self.session.seq, "d": ready})
        elif op == 6:
            session = self.session
            if session is None or data.get("session_id") != session.session_id:
                await self._send(ws, {"op": 9, "d": False})
                return
            for event in session.events:
                if event["s"] > int(data.get("seq") or 0):
                    await self._send(ws, event)
            session.seq += 1
            await self._send(ws, {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}})


async def _body(request: web.Request) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """A JSON body, or discord.py's multipart one: ``payload_json`` plus ``files[n]``."""
    if "multipart" not in (request.content_type or ""):
        return await request.json(), []
    body: dict[str, Any] = {}
    uploads: list[tuple[str, bytes]] = []
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif part.filename:
            uploads.append((part.filename, bytes(await part.read())))
    return body, uploads
