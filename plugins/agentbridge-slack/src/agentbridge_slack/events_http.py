"""The Events API over HTTP (``mode = "events"``): for a server Slack can reach.

Slack POSTs events (JSON), button clicks (form ``payload=``) and slash commands (form fields)
to one URL, each signed with the app's signing secret: ``X-Slack-Signature`` is
``v0=HMAC-SHA256(secret, "v0:<timestamp>:<body>")``. A request whose signature is wrong or
whose timestamp is more than five minutes off (a replay) is refused with 401 before anything
is parsed — the SDK's own ``SignatureVerifier`` decides. The HTTP answer is the ack: 200 only
after the ingest returned; a failed ingest answers 500 and Slack sends the request again
(``X-Slack-Retry-Num``), which the ``channel:ts`` key turns into a no-op.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

#: (kind as Socket Mode names it, payload) → done; raises when the ingest failed
Take = Callable[[str, dict[str, Any]], Awaitable[None]]
MAX_BODY = 1024 * 1024


def classify_body(content_type: str, body: bytes) -> tuple[str, dict[str, Any]] | None:
    """(kind, payload) of a verified request body, or None when it is none of ours."""
    try:
        if content_type == "application/json":
            data = json.loads(body)
            if isinstance(data, dict) and data.get("type") in (
                "event_callback",
                "url_verification",
            ):
                return (
                    "events_api" if data["type"] == "event_callback" else "url_verification"
                ), data
            return None
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
    except (ValueError, UnicodeDecodeError):
        return None
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except ValueError:
            return None
        return ("interactive", payload) if isinstance(payload, dict) else None
    if "command" in form:
        return "slash_commands", form
    return None


class EventsServer:
    """One aiohttp server on ``host:port`` answering ``path``."""

    def __init__(self, secret: str, take: Take, host: str, port: int, path: str) -> None:
        self._verifier = SignatureVerifier(secret)
        self._take = take
        self._host, self._port, self._path = host, port, path
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.rejected = 0
        self.failed = 0

    async def start(self) -> None:
        """Listen; a port in use is one clear error (the bridge does not start half-way)."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self._path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("slack: Events API on http://%s:%d%s", self._host, self.port, self._path)

    async def stop(self) -> None:
        """Close the server; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _valid(self, body: bytes, request: web.Request) -> bool:
        try:
            return self._verifier.is_valid_request(body, dict(request.headers))
        except (ValueError, TypeError):  # a timestamp that is not a number
            return False

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._valid(body, request):
            self.rejected += 1
            log.warning("slack: refused an unsigned or stale request from %s", request.remote)
            return web.Response(status=401, text="invalid signature")
        found = classify_body(request.content_type, body)
        if found is None:
            return web.Response(status=400, text="not a Slack request")
        kind, payload = found
        if kind == "url_verification":  # Slack checks the URL when it is saved
            return web.json_response({"challenge": str(payload.get("challenge", ""))})
        retry = request.headers.get("X-Slack-Retry-Num")
        if retry:
            log.info("slack: retry %s of a %s request", retry, kind)
        try:
            await self._take(kind, payload)
        except Exception:
            self.failed += 1
            log.exception("slack: a %s request was not stored; Slack will send it again", kind)
            return web.Response(status=500, text="not stored")
        return web.Response(status=200)
