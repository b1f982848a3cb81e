"""The web console as a channel: an aiohttp server for chat, live receipts and the dashboard.

``start(ctx)`` binds ``console.host:port`` (port 0 = any free port), writes a fresh access token
to ``<state_dir>/console.token`` (0600) and exposes ``url`` (with the token, to print) and
``base_url``. Replies need no platform call: the reply is already in the ledger, and the page
shows it once its outbox row is sent (see ``views``), so ``deliver`` only names the delivery.
A file from the agent is a ``deliver_file`` the same way: the page links ``downloads``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from agentbridge.channels.web import permissions
from agentbridge.channels.web.api import ConsoleApi
from agentbridge.channels.web.downloads import Downloads
from agentbridge.channels.web.security import (
    Guard,
    add_security_headers,
    new_token,
    remove_token_file,
    write_token_file,
)
from agentbridge.channels.web.sse import EventStreams, Notifier
from agentbridge.config import ConsoleConfig
from agentbridge.delivery.outfiles import FileRoots
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.protocols import (
    ChannelContext,
    ChannelLimits,
    ErrorClass,
    OutFile,
    Receipt,
)

log = logging.getLogger(__name__)

STATIC_FILES = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "util.js": "text/javascript",
    "live.js": "text/javascript",
    "state.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "permissions.js": "text/javascript",
    "chat.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


class ConsoleStartError(RuntimeError):
    """The console could not listen (port taken, bad host): a readable reason."""


class WebChannel:
    """The built-in web console channel (name ``web``)."""

    name = "web"
    singleton = False  #: fleet: every node serves its own console
    #: the page renders any length; never chunk a reply
    limits = ChannelLimits(max_message_length=10_000_000, supports_formatting=False)

    def __init__(self, console: ConsoleConfig | None = None, files: FileRoots | None = None):
        self.console = console or ConsoleConfig()
        #: where the agents' files may be read from for a download (``downloads``)
        self.files = files or FileRoots({})
        self.limits = ChannelLimits(
            max_message_length=self.limits.max_message_length,
            max_file_bytes=self.console.max_file_bytes,
        )
        self.token = ""
        self.port = 0
        self.ctx: ChannelContext | None = None
        self.streams: EventStreams | None = None
        self._notifier: Notifier | None = None
        self._runner: web.AppRunner | None = None
        self._token_file: Path | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._guard: Guard | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        """The console's address without credentials."""
        host = self.console.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        """What ``agentbridge up`` prints: opening it logs the browser in (cookie)."""
        return f"{self.base_url}?token={self.token}" if self.token else self.base_url

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Listen, write the token file, follow the ledger for live views."""
        if ctx.ledger is None:
            raise ConsoleStartError("the web console needs ctx.ledger")
        self.ctx = ctx
        self.token = new_token()
        self._notifier = Notifier(ctx.ledger)
        await self._notifier.start()
        self.streams = EventStreams(ctx.ledger, self._notifier, ctx.name or self.name)
        app = web.Application(client_max_size=4 * 1024 * 1024)
        # the guard needs the port, known only after binding: it is looked up per request
        app.middlewares.append(self._guard_middleware)
        app.on_response_prepare.append(add_security_headers)
        api = ConsoleApi(ctx, self._notifier, ctx.name or self.name)
        app.add_routes(api.routes())
        app.add_routes(permissions.routes(ctx))  # pending permission requests, answered
        limit = self.console.max_file_bytes
        app.add_routes(Downloads(ctx.ledger, ctx.name or self.name, self.files, limit).routes())
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/api/events", self.streams.handle),
                web.get("/static/{name}", self._static),
            ]
        )
        try:
            sock = _listen(self.console.host, self.console.port)
        except OSError as exc:
            self._notifier.close()
            raise ConsoleStartError(
                f"web console: cannot listen on {self.console.host}:{self.console.port}"
                f" ({exc.strerror or exc}); set [console] port = 0 for any free port,"
                " or enabled = false"
            ) from exc
        self.port = int(sock.getsockname()[1])
        self._guard = Guard(self.token, self.port, self.console.host, self.console.allowed_hosts)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._token_file = ctx.state_dir / "console.token"
        write_token_file(self._token_file, self.token)
        log.info("web console on %s", self.base_url)

    @web.middleware
    async def _guard_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._guard is None:
            return web.Response(status=503, text="starting\n")
        response: web.StreamResponse = await self._guard.middleware(request, handler)
        return response

    async def stop(self) -> None:
        """Close streams and the server, remove the token file; safe to call twice."""
        if self.streams is not None:
            self.streams.drop_all()
        if self._notifier is not None:
            self._notifier.close()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._token_file is not None:
            remove_token_file(self._token_file, self.token)
            self._token_file = None

    # ------------------------------------------------------------------ channel protocol

    async def deliver(self, item: OutboxItem) -> str | None:
        """The reply is in the ledger already; the page shows it once the row is ``sent``.

        ``mark_sent`` does not wake ledger listeners, so watch this row briefly and wake the
        streams the moment the relay has committed it (no waiting for the safety poll).
        """
        task = asyncio.get_running_loop().create_task(self._wake_when_settled(item.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return f"web-{item.id}"

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """The relay checked and read the file; the page links it once the row is ``sent``
        (``downloads`` reads it again from where the agent wrote it)."""
        return await self.deliver(item)

    async def _wake_when_settled(self, outbox_id: int, timeout: float = 5.0) -> None:
        if self.ctx is None or self.ctx.ledger is None or self._notifier is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(Exception):
            while loop.time() < deadline:
                item = await self.ctx.ledger.get_reply(outbox_id)
                if item.state not in ("pending", "sending"):
                    break
                await asyncio.sleep(0.005)
        self._notifier.wake()

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """``deliver`` calls no platform, so it has no errors of its own to classify."""
        return None

    async def receipt(self, receipt: Receipt) -> None:
        """Receipts are derived from ledger events; a receipt is only a cue to look now.

        Some ledger writes do not notify listeners (``mark_sent``), and the bridge emits
        ``replied`` right after one, so every receipt wakes the streams. ``waiting`` (rate
        limit, permission prompt) is not in the ledger at all: it is pushed as a live hint.
        """
        if self.streams is None or self._notifier is None:
            return
        self._notifier.wake()
        if receipt.status != "waiting":
            return
        with contextlib.suppress(Exception):
            self.streams.push_receipt(
                {
                    "message_id": receipt.message_id,
                    "channel": receipt.channel,
                    "conversation": receipt.conversation,
                    "status": receipt.status,
                    "detail": receipt.detail,
                }
            )

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Progress (``EditingChannel``): the turn's status line on the chat page, replaced
        in place — a live hint like ``waiting``, never in the ledger."""
        if self.streams is not None:
            self.streams.push_receipt(
                {
                    "message_id": message.id,
                    "channel": message.channel,
                    "conversation": message.conversation,
                    "status": "working",
                    "detail": text,
                    "progress": True,
                }
            )
        return status_id or f"progress-{message.id}"

    # ------------------------------------------------------------------ pages

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=_static_bytes("index.html"),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = STATIC_FILES.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=_static_bytes(name),
            content_type=kind,
            charset="utf-8" if kind.startswith("text/") else None,
            headers={"Cache-Control": "no-cache"},
        )


def _static_bytes(name: str) -> bytes:
    """A file shipped in ``static/`` (package data; read at request time so edits show)."""
    return (resources.files("agentbridge.channels.web") / "static" / name).read_bytes()


def _listen(host: str, port: int) -> socket.socket:
    """Bind before serving, so the port (and so the Host allowlist) is known up front."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)
