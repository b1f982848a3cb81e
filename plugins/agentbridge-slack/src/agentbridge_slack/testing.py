"""A fake Slack on 127.0.0.1 for tests: the Web API the SDK calls and the Socket Mode socket.

The real slack_sdk talks to it unmodified (``AsyncWebClient(base_url=fake.base_url)``;
``apps.connections.open`` hands out a ``ws://`` URL to this same server). Semantics kept where
they matter: an envelope not acked is sent again with ``retry_attempt`` + 1 on the next
connection; ``disconnect`` messages make the client reconnect; ``chat.postMessage`` stores
the message in the channel's history so ``conversations.history`` / ``.replies`` see it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from agentbridge_slack.doctor import SCOPES
from agentbridge_slack.fake_extras import FakeExtras
from agentbridge_slack.fake_shared import (
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    Envelope,
)

__all__ = [
    "APP_TOKEN",
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER",
    "SIGNING_SECRET",
    "TEAM",
    "Envelope",
    "FakeSlack",
]


class FakeSlack(FakeExtras):
    """``async with FakeSlack() as fake: fake.user_message("D1", "UALICE", "hi")``."""

    def __init__(self) -> None:
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.kinds: dict[str, str] = {}  # channel → "im" | "channel"
        self.members: set[str] = set()
        self.posted: list[dict[str, Any]] = []  # chat.postMessage requests Slack acted on
        self.reactions: list[tuple[str, str, str, str]] = []  # (op, channel, ts, name)
        self.calls: list[str] = []
        self.envelopes: dict[str, Envelope] = {}
        self.faults: list[str] = []  # for the next chat.postMessage calls, in order
        self.always_fail: str | None = None
        self.stall_seconds = 30.0
        self.scopes = list(SCOPES)  #: the bot token's, as ``x-oauth-scopes`` says them
        self.connects = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._clock = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._init_extras()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        self._routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every socket and the server."""
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What ``[channels.slack] base_url`` should say."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def connected(self) -> bool:
        """A Socket Mode client is connected now."""
        return any(not ws.closed for ws in self._sockets)

    # ------------------------------------------------------------------ scripting

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._clock):06d}"

    def user_message(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        team: str = TEAM,
        mention: bool = False,
        push: bool = True,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A user writes; stored in history, and (``push``) sent as an envelope if connected."""
        kind = "im" if channel.startswith("D") else "channel"
        self.kinds.setdefault(channel, kind)
        self.members.add(channel)
        ts = self._ts()
        if mention:
            text = f"<@{BOT_USER}> {text}"
        msg: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "team": team,
            "client_msg_id": str(uuid.uuid4()),
        }
        if thread_ts:
            msg["thread_ts"] = thread_ts
        if files:
            msg.update(subtype="file_share", files=files, upload=False)
        self._store(channel, msg)
        if push:
            event = dict(msg, channel=channel, channel_type=kind)
            if mention and kind != "im":
                event["type"] = "app_mention"
            self.push_event(event)
        return msg

    def _store(self, channel: str, msg: dict[str, Any]) -> None:
        self.history.setdefault(channel, []).append(msg)
        thread = msg.get("thread_ts")
        if thread and thread != msg["ts"]:
            for parent in self.history[channel]:
                if parent["ts"] == thread:
                    parent["latest_reply"] = msg["ts"]
                    parent.setdefault("thread_ts", thread)

    def push_event(self, event: dict[str, Any]) -> Envelope:
        """Wrap ``event`` in a new envelope and send it to the connected client."""
        payload = {
            "type": "event_callback",
            "team_id": TEAM,
            "event_id": "Ev" + uuid.uuid4().hex[:10],
            "event_time": int(time.time()),
            "event": event,
        }
        return self._envelope("events_api", payload)

    def _envelope(self, kind: str, payload: dict[str, Any]) -> Envelope:
        env = Envelope(str(uuid.uuid4()), payload, type=kind)
        self.envelopes[env.envelope_id] = env
        self._send_soon(env)
        return env

    def redeliver(self, envelope_id: str) -> None:
        """Slack's retry: the same envelope again, ``retry_attempt`` + 1."""
        env = self.envelopes[envelope_id]
        env.retry_attempt += 1
        self._send_soon(env)

    def _send_soon(self, env: Envelope) -> None:
        send = self._post_http(env) if self.events_url else self._send(env)
        asyncio.get_running_loop().create_task(send)

    async def _send(self, env: Envelope) -> None:
        for ws in [w for w in self._sockets if not w.closed][-1:]:
            env.sent_times.append(time.monotonic())
            await ws.send_json(
                {
                    "envelope_id": env.envelope_id,
                    "type": env.type,
                    "accepts_response_payload": env.type != "events_api",
                    "retry_attempt": env.retry_attempt,
                    "retry_reason": "timeout" if env.retry_attempt else "",
                    "payload": env.payload,
                }
            )

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's "please reconnect" message (the client opens a new connection)."""
        for ws in [w for w in self._sockets if not w.closed]:
            await ws.send_json({"type": "disconnect", "reason": reason})

    async def drop(self) -> None:
        """Close every socket abruptly (a network drop)."""
        for ws in list(self._sockets):
            await ws.close()

    def unacked(self) -> list[Envelope]:
        """Envelopes Slack would still retry."""
        return [e for e in self.envelopes.values() if not e.ack_times]

    def fail_next(self, *faults: str) -> None:
        """Faults for the next postMessage calls: ratelimited, channel_not_found,
        not_in_channel, invalid_auth, 500, stall (posted, answer late), reset (posted,
        connection cut), ok."""
        self.faults.extend(faults)

    # ------------------------------------------------------------------ the socket

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connects += 1
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {}})
        for env in self.unacked():
            if env.sent_times:  # sent on a connection that died unacked: Slack retries
                env.retry_attempt += 1
                await self._send(env)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                continue
            acked = self.envelopes.get(str(data.get("envelope_id")))
            if acked is not None:
                acked.ack_times.append(time.monotonic())
        return ws

    # ------------------------------------------------------------------ the Web API

    async def _args(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            return {}
        if request.content_type == "application/json":
            data = await request.json()
            return dict(data) if isinstance(data, dict) else {}
        form = await request.post()
        return {k: str(v) for k, v in form.items()}

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        self.calls.append(method)
        args = await self._args(request)
        args.update(request.query)
        auth = request.headers.get("Authorization", "")
        want = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if auth != f"Bearer {want}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result: web.StreamResponse = await handler(request, args)
        if want == BOT_TOKEN and not result.prepared:  # as Slack: on every bot-token answer
            result.headers["x-oauth-scopes"] = ",".join(self.scopes)
        return result

    async def _m_auth_test(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        return web.json_response(
            {"ok": True, "user_id": BOT_USER, "bot_id": BOT_ID, "team_id": TEAM, "user": "bridge"}
        )

    async def _m_apps_connections_open(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        url = f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4().hex}"
        return web.json_response({"ok": True, "url": url})

    async def _m_users_conversations(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        chans = [{"id": c, "is_im": self.kinds.get(c) == "im"} for c in sorted(self.members)]
        return web.json_response({"ok": True, "channels": chans, "response_metadata": {}})

    def _window(self, messages: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
        oldest = float(args.get("oldest") or 0)
        return [m for m in messages if float(m["ts"]) > oldest]

    async def _m_conversations_history(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        channel = str(args.get("channel"))
        top = [
            m
            for m in self.history.get(channel, [])
            if not m.get("thread_ts") or m["thread_ts"] == m["ts"]
        ]
        found = sorted(self._window(top, args), key=lambda m: float(m["ts"]), reverse=True)
        return web.json_response({"ok": True, "messages": found, "has_more": False})

    async def _m_conversations_replies(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        thread = [
            m for m in self.history.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts
        ]
        found = sorted(self._window(thread, args), key=lambda m: float(m["ts"]))
        return web.json_response({"ok": True, "messages": found, "has_more": False})

    async def _m_reactions_add(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        self.reactions.append(("add", args["channel"], args["timestamp"], args["name"]))
        return web.json_response({"ok": True})

    async def _m_reactions_remove(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        self.reactions.append(("remove", args["channel"], args["timestamp"], args["name"]))
        return web.json_response({"ok": True})

    async def _m_chat_postMessage(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.StreamResponse:
        fault = self.faults.pop(0) if self.faults else self.always_fail
        if fault == "ratelimited":
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        if fault in ("channel_not_found", "not_in_channel", "invalid_auth"):
            return web.json_response({"ok": False, "error": fault})
        if fault == "500":
            return web.Response(status=500, text="upstream error")
        channel = str(args.get("channel"))
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": str(args.get("text", "")),
            "ts": self._ts(),
        }
        if args.get("thread_ts"):
            msg["thread_ts"] = str(args["thread_ts"])
        if args.get("blocks"):
            msg["blocks"] = args["blocks"]
        self._store(channel, msg)
        self.posted.append(dict(msg, channel=channel))
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        return web.json_response({"ok": True, "channel": channel, "ts": msg["ts"], "message": msg})
