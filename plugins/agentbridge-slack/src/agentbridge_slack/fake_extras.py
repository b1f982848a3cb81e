"""The parts of the fake Slack beyond plain messages: files, buttons, slash commands, HTTP.

A mixin of ``testing.FakeSlack`` (kept apart so each module stays small): ``url_private``
downloads that need the bot token, the three-step upload (``files.getUploadURLExternal``, the
upload URL, ``files.completeUploadExternal``), ``chat.update``, and ``interactive`` /
``slash_commands`` envelopes built the way Slack builds them — over the socket, or (with
``events_url`` set) as the Events API's signed HTTP requests, where a 200 answer is the ack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from agentbridge_slack.fake_shared import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    Envelope,
)


class FakeExtras:
    """Files, ``chat.update``, clicks and slash commands (mixed into ``FakeSlack``)."""

    port: int
    history: dict[str, list[dict[str, Any]]]
    always_fail: str | None  #: "reset" holds for uploads too

    def _init_extras(self) -> None:
        self.stored_files: dict[str, dict[str, Any]] = {}  # id → name, data, mimetype
        self.downloads: list[tuple[str, str]] = []  # (file id, Authorization header)
        self.uploaded: list[dict[str, Any]] = []  # file messages posted by the bot
        self.upload_faults: list[str] = []  # for the next completeUploadExternal: reset
        self.updates: list[dict[str, Any]] = []  # chat.update requests
        #: set: envelopes go to this Events API URL as signed HTTP requests, not the socket
        self.events_url: str | None = None

    # these come from FakeSlack
    def _ts(self) -> str:
        raise NotImplementedError

    def _store(self, channel: str, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    def _envelope(self, kind: str, payload: dict[str, Any]) -> Envelope:
        raise NotImplementedError

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/files-pri/{file_id}/{name}", self._download)
        app.router.add_post("/upload/{file_id}", self._upload)

    # ------------------------------------------------------------------ scripting

    def add_file(
        self, name: str, data: bytes, mimetype: str = "text/plain", size: int | None = None
    ) -> dict[str, Any]:
        """A file a user shared: the object a message event carries (``size`` may lie)."""
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        self.stored_files[file_id] = {"name": name, "data": data, "mimetype": mimetype}
        url = f"http://127.0.0.1:{self.port}/files-pri/{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "size": len(data) if size is None else size,
            "mode": "hosted",
            "url_private": url,
            "url_private_download": url + "?download=1",
        }

    def click(self, question: dict[str, Any], user: str, label: str, team: str = TEAM) -> Envelope:
        """``user`` clicks the button labelled ``label`` on a message the bot posted."""
        [actions] = [b for b in question.get("blocks") or [] if b.get("type") == "actions"]
        [button] = [e for e in actions["elements"] if e["text"]["text"] == label]
        channel = question["channel"]
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": question["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        }
        if question.get("thread_ts"):
            container["thread_ts"] = question["thread_ts"]
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": team},
            "api_app_id": "A1",
            "token": "verification-token",
            "container": container,
            "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:8]}",
            "team": {"id": team, "domain": "test"},
            "channel": {"id": channel, "name": "general"},
            "message": {k: v for k, v in question.items() if k != "channel"},
            "response_url": f"http://127.0.0.1:{self.port}/response/1",
            "actions": [dict(button, block_id=actions.get("block_id", "b"), action_ts=self._ts())],
        }
        return self._envelope("interactive", payload)

    def slash(
        self, channel: str, user: str, command: str, text: str = "", team: str = TEAM
    ) -> Envelope:
        """``user`` types ``command text`` in ``channel``."""
        payload = {
            "token": "verification-token",
            "team_id": team,
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A1",
            "is_enterprise_install": "false",
            "response_url": f"http://127.0.0.1:{self.port}/commands/1",
            "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:12]}",
        }
        return self._envelope("slash_commands", payload)

    # ------------------------------------------------------------------ Events API

    async def post_signed(
        self,
        body: bytes,
        content_type: str,
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """One request as Slack signs it: ``v0=HMAC-SHA256(secret, "v0:<ts>:<body>")``."""
        assert self.events_url is not None
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
            **(headers or {}),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.events_url, data=body, headers=sent) as answer,
        ):
            return answer.status, await answer.text()

    async def _post_http(self, env: Envelope) -> None:
        if env.type == "events_api":
            body, kind = json.dumps(env.payload).encode(), "application/json"
        elif env.type == "interactive":
            body = urlencode({"payload": json.dumps(env.payload)}).encode()
            kind = "application/x-www-form-urlencoded"
        else:
            body, kind = urlencode(env.payload).encode(), "application/x-www-form-urlencoded"
        retry = {"X-Slack-Retry-Num": str(env.retry_attempt)} if env.retry_attempt else {}
        env.sent_times.append(time.monotonic())
        status, _ = await self.post_signed(body, kind, headers=retry)
        env.statuses.append(status)
        if status == 200:
            env.ack_times.append(time.monotonic())

    # ------------------------------------------------------------------ HTTP

    async def _download(self, request: web.Request) -> web.StreamResponse:
        stored = self.stored_files.get(request.match_info["file_id"])
        auth = request.headers.get("Authorization", "")
        self.downloads.append((request.match_info["file_id"], auth))
        if auth != f"Bearer {BOT_TOKEN}":  # Slack's answer without a good token: a 200 page
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        if stored is None:
            return web.Response(status=404)
        return web.Response(body=stored["data"], content_type=stored["mimetype"])

    async def _upload(self, request: web.Request) -> web.Response:
        stored = self.stored_files.get(request.match_info["file_id"])
        if stored is None:
            return web.Response(status=404)
        stored["data"] = await request.read()
        return web.Response(text=f"OK - {len(stored['data'])}")

    async def _m_chat_update(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        self.updates.append(dict(args, at=time.monotonic()))
        for msg in self.history.get(str(args.get("channel")), []):
            if msg["ts"] == args.get("ts"):
                msg["text"] = args.get("text", msg["text"])
                msg["blocks"] = args.get("blocks") or []
                return web.json_response({"ok": True, "ts": msg["ts"]})
        return web.json_response({"ok": False, "error": "message_not_found"})

    async def _m_files_getUploadURLExternal(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        self.stored_files[file_id] = {"name": args["filename"], "data": None, "mimetype": ""}
        url = f"http://127.0.0.1:{self.port}/upload/{file_id}"
        return web.json_response({"ok": True, "upload_url": url, "file_id": file_id})

    async def _m_files_completeUploadExternal(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        listed = json.loads(str(args.get("files") or "[]"))
        found = [self.stored_files.get(str(f.get("id"))) for f in listed]
        if not found or any(f is None or f["data"] is None for f in found):
            return web.json_response({"ok": False, "error": "file_not_found"})
        channel = str(args.get("channel_id"))
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": str(args.get("initial_comment") or ""),
            "ts": self._ts(),
            "upload": True,
            "files": [
                {"id": f["id"], "name": s["name"], "size": len(s["data"])}
                for f, s in zip(listed, found, strict=True)
                if s is not None
            ],
        }
        if args.get("thread_ts"):
            msg["thread_ts"] = str(args["thread_ts"])
        self._store(channel, msg)
        self.uploaded.append(dict(msg, channel=channel, data=[s["data"] for s in found if s]))
        fault = self.upload_faults.pop(0) if self.upload_faults else self.always_fail
        if fault == "reset":  # posted, then the connection is cut (as chat.postMessage)
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(0)
        files = [{"id": f["id"], "title": f.get("title")} for f in listed]
        return web.json_response({"ok": True, "files": files})
