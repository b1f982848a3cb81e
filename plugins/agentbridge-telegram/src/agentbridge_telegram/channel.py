"""The Telegram channel: its lifecycle, and the parts it hands the work to.

Long polling (``poller``) or a webhook (``webhook``) feeds updates to ``intake`` (refusals,
clicks, the ingest with files); replies go out through ``sending`` (files: ``uploads``),
progress edits through ``edits``, receipts through ``receipts``. The one rule that makes it
lossless lives in ``poller``: the getUpdates offset advances only after the ledger commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from dataclasses import replace
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.protocols import (
    ChannelContext,
    ChannelLimits,
    ErrorClass,
    OutFile,
    Receipt,
)

from agentbridge_telegram import edits, webhook
from agentbridge_telegram.api import (
    BotApi,
    TelegramApiError,
    TelegramNetworkError,
    classify,
    get_logger,
    to_delivery_error,
)
from agentbridge_telegram.formatting import MAX_MESSAGE_LENGTH
from agentbridge_telegram.intake import Intake
from agentbridge_telegram.poller import Poller
from agentbridge_telegram.receipts import ReceiptSender
from agentbridge_telegram.sending import Sender
from agentbridge_telegram.settings import (
    TelegramSettings,
    load_token,
    parse_settings,
    webhook_secret,
)
from agentbridge_telegram.uploads import DOCUMENT_MAX

log = get_logger(__name__)

#: live channels, so the module-level ``host_woke`` hook can reach them
LIVE: weakref.WeakSet[TelegramChannel] = weakref.WeakSet()


class TelegramChannel:
    """One bot. ``settings=None`` reads the table from ``ChannelContext.config`` at start."""

    name = "telegram"
    limits = ChannelLimits(
        max_message_length=MAX_MESSAGE_LENGTH, supports_formatting=True, max_file_bytes=DOCUMENT_MAX
    )

    def __init__(
        self, settings: TelegramSettings | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self._env = env
        self._api: BotApi | None = None
        self._ctx: ChannelContext | None = None
        self._intake: Intake | None = None
        self._poller: Poller | None = None
        self._sender: Sender | None = None
        self._receipts: ReceiptSender | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._webhook: webhook.WebhookServer | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.reconnects = 0
        self.bot_username: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Read the token, check it with getMe, then poll or serve the webhook."""
        if self.settings is None:
            self.settings = parse_settings(dict(ctx.config))
        settings = self.settings
        token = load_token(settings, self._env)
        self.limits = replace(self.limits, max_file_bytes=settings.max_file_bytes)
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._api = api = BotApi(token, settings.base_url, settings.request_timeout)
        self._intake = Intake(api, ctx, settings, self._spawn)
        self._sender = Sender(api, settings)
        self._receipts = ReceiptSender(api, self._intake.origin)
        if not settings.allowed_users:
            log.warning("telegram: allowed_users is empty: every sender will be refused")
        try:
            await self._check_token()
            if settings.mode == "webhook":
                secret = webhook_secret(settings, self._env)
                self._webhook = webhook.WebhookServer(settings, secret, self._intake.handle)
                await self._webhook.start()
                if settings.webhook_url:
                    await self._set_webhook(secret)
            else:
                self._poller = Poller(api, settings.poll_timeout, self._intake.handle)
                self._task = asyncio.create_task(self._poller.run(), name="telegram-poll")
        except BaseException:
            await self.stop()  # a channel that failed to start holds no socket or session
            raise
        LIVE.add(self)

    async def _check_token(self) -> None:
        assert self._api is not None
        try:
            me = await self._api.call("getMe")
            self.bot_username = me.get("username") if isinstance(me, dict) else None
            log.info("telegram: connected as @%s", self.bot_username)
        except TelegramApiError as exc:
            if exc.status in (401, 404):
                raise ConfigError("config: channels.telegram: the bot token was rejected") from None
            log.warning("telegram: getMe failed (will keep trying): %s", exc)
        except TelegramNetworkError as exc:
            log.warning("telegram: Bot API unreachable (will keep trying): %s", exc)

    async def _set_webhook(self, secret: str) -> None:
        assert self._api is not None and self.settings is not None
        try:
            await self._api.call(
                "setWebhook",
                url=self.settings.webhook_url,
                secret_token=secret,
                allowed_updates=["message", "callback_query"],
            )
        except TelegramApiError as exc:
            raise ConfigError(f"config: channels.telegram.webhook_url refused: {exc}") from None
        except TelegramNetworkError as exc:
            log.warning("telegram: setWebhook failed (Telegram keeps the old one): %s", exc)

    async def stop(self) -> None:
        """Stop polling/serving, stop typing, close the pool; safe to call twice."""
        LIVE.discard(self)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        for bg in list(self._background):
            bg.cancel()
        if self._receipts is not None:
            await self._receipts.close()
        if self._api is not None:
            await self._api.close()

    @property
    def webhook_port(self) -> int | None:
        """The port the webhook server listens on (useful with ``webhook_port = 0``)."""
        return self._webhook.port if self._webhook else None

    @property
    def offset(self) -> int | None:
        """The next getUpdates offset (None until the first update was committed)."""
        return self._poller.offset if self._poller else None

    @property
    def refused(self) -> int:
        """Messages and clicks of strangers refused since start."""
        return self._intake.refused if self._intake else 0

    def status(self) -> dict[str, Any]:
        """A small snapshot for ``agentbridge status``."""
        return {
            "mode": self.settings.mode if self.settings else None,
            "bot": self.bot_username,
            "offset": self.offset,
            "reconnects": self.reconnects,
            "refused": self.refused,
        }

    # ------------------------------------------------------------------ wake / reconnect

    def wake(self) -> None:
        """Called by the ``host_woke`` hook (any thread): reconnect the long poll now."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._reconnect)

    def _reconnect(self) -> None:
        """Abort the (probably dead) long poll and any backoff; redial with fresh sockets."""
        self.reconnects += 1
        if self._poller is not None:
            self._poller.reconnect()
        if self._api is not None:
            self._spawn(self._api.reset())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ sending

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one relay chunk (``sending``); return the first message id."""
        if self._sender is None:
            raise to_delivery_error(TelegramNetworkError("telegram channel not started"))
        return await self._sender.deliver(item)

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload one file the relay checked and read (``sending``, ``uploads``)."""
        if self._sender is None:
            raise to_delivery_error(TelegramNetworkError("telegram channel not started"))
        return await self._sender.deliver_file(item, file)

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Progress (``EditingChannel``): post the status, then edit it in place (``edits``)."""
        if self._api is None:
            raise TelegramNetworkError("telegram channel not started")
        return await edits.edit_message(self._api, message, text, status_id)

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Telegram's own rules (see ``api.classify``); None for errors that are not ours."""
        return classify(exc)

    async def receipt(self, receipt: Receipt) -> None:
        """Reaction / typing on the sender's message; best effort, never raises."""
        if self._receipts is not None:
            await self._receipts.send(receipt)
