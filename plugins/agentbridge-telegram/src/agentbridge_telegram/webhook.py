"""Webhook mode: Telegram POSTs each update to us; we answer 200 only after the commit.

Telegram re-sends an update until it gets a 2xx, so "200 after ``ctx.ingest`` returned" is
the webhook twin of "advance the offset after the commit". Every request must carry the
secret in ``X-Telegram-Bot-Api-Secret-Token`` (set with setWebhook), or it is refused: the
listen port may be reachable by others, and a forged update would reach the agent.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentbridge_telegram.api import get_logger
from agentbridge_telegram.settings import TelegramSettings

log = get_logger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

UpdateHandler = Callable[[dict[str, Any]], Awaitable[None]]


class WebhookServer:
    """A one-route aiohttp server in front of the channel's update handler."""

    def __init__(self, settings: TelegramSettings, secret: str, handle: UpdateHandler) -> None:
        self._settings = settings
        self._secret = secret
        self._handle = handle
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Listen on ``webhook_host:webhook_port`` (port 0 picks a free one)."""
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post(self._settings.webhook_path, self._on_update)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.webhook_host, self._settings.webhook_port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._settings.webhook_port
        log.info(
            "telegram: webhook listening on %s:%s%s",
            self._settings.webhook_host,
            self.port,
            self._settings.webhook_path,
        )

    async def stop(self) -> None:
        """Stop listening; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _on_update(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            log.warning("telegram: webhook request from %s refused: bad secret", request.remote)
            return web.Response(status=401, text="unauthorised")
        try:
            update = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(update, dict):
            return web.Response(status=400, text="not an update")
        try:
            await self._handle(update)
        except Exception:
            # not committed: a non-2xx makes Telegram deliver it again later
            log.exception("telegram: webhook update %s not stored", update.get("update_id"))
            return web.Response(status=500, text="not stored, retry")
        return web.Response(text="ok")
