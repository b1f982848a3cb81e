"""The Telegram channel: long polling (or a webhook) in, ``sendMessage`` (files: ``uploads``) out.

The one rule that makes it lossless: the getUpdates offset (which is how Telegram learns an
update was received) advances only after ``ctx.ingest`` returned, i.e. after the ledger
commit. A crash in between means Telegram hands the update out again, and ingest, idempotent
on ``(channel, "<chat_id>:<message_id>")``, turns the second copy into a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.ledger.sqlite import IdempotencyConflict
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    AttachmentTooLarge,
    ChannelContext,
    ChannelLimits,
    DeliveryError,
    ErrorClass,
    OutFile,
    Receipt,
)
from agentbridge.supervisor.routing import Unroutable

from agentbridge_telegram import buttons, webhook
from agentbridge_telegram.api import (
    BotApi,
    TelegramApiError,
    TelegramNetworkError,
    classify,
    get_logger,
    to_delivery_error,
)
from agentbridge_telegram.files import fetch
from agentbridge_telegram.formatting import MAX_MESSAGE_LENGTH, chunk_text
from agentbridge_telegram.inbound import parse_update
from agentbridge_telegram.outbound import (
    chat_ref,
    message_key,
    remember,
    reply_target,
    send_part,
)
from agentbridge_telegram.receipts import ReceiptSender
from agentbridge_telegram.settings import (
    TelegramSettings,
    load_token,
    parse_settings,
    webhook_secret,
)
from agentbridge_telegram.uploads import DOCUMENT_MAX, send_file, split_caption

log = get_logger(__name__)

NOT_AUTHORISED = "Sorry, you are not authorised to use this bot."
EMPTY_REPLY = "(the agent's reply was empty)"
TEXT_ONLY = (
    "Only text, photos, documents and voice notes reach the agent; this one was not forwarded."
)
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
        self._receipts: ReceiptSender | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetch: asyncio.Task[Any] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._webhook: webhook.WebhookServer | None = None
        self._origins: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self._progress: dict[str, list[str]] = {}  # chunk key → ids of sub-parts already sent
        self._answered: set[int | None] = set()  # refused users already told so
        self._background: set[asyncio.Task[None]] = set()
        #: next getUpdates offset (None until the first update was committed)
        self.offset: int | None = None
        self.reconnects = 0
        self.refused = 0
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
        self._api = BotApi(token, settings.base_url, settings.request_timeout)
        self._receipts = ReceiptSender(self._api, self._origin)
        if not settings.allowed_users:
            log.warning("telegram: allowed_users is empty: every sender will be refused")
        try:
            await self._check_token()
            if settings.mode == "webhook":
                secret = webhook_secret(settings, self._env)
                self._webhook = webhook.WebhookServer(settings, secret, self._handle_update)
                await self._webhook.start()
                if settings.webhook_url:
                    await self._set_webhook(secret)
            else:
                self._task = asyncio.create_task(self._poll_loop(), name="telegram-poll")
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
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
        self._wake.set()
        if self._api is not None:
            self._spawn(self._api.reset())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _pause(self, seconds: float) -> None:
        """Back off, but wake at once on ``host_woke``."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    # ------------------------------------------------------------------ receiving

    async def _poll_loop(self) -> None:
        """Poll forever; nothing but cancellation ends it (a dead poller = a deaf bridge)."""
        failures = 0
        while True:
            try:
                failures = 0 if await self._poll_once() else failures + 1
            except Exception:
                log.exception("telegram: poll loop error")
                failures += 1
            if failures:
                await self._pause(min(2.0 ** (failures - 1), 60.0))

    async def _poll_once(self) -> bool:
        """One getUpdates and its updates, in order; False when something must be retried."""
        assert self._api is not None and self.settings is not None
        timeout = self.settings.poll_timeout
        fetch = asyncio.ensure_future(
            self._api.call(
                "getUpdates",
                http_timeout=timeout + 15,
                offset=self.offset,
                timeout=int(timeout),
                allowed_updates=["message", "edited_message", "callback_query"],
            )
        )
        self._fetch = fetch
        try:
            await asyncio.wait({fetch})
        except asyncio.CancelledError:
            fetch.cancel()
            raise
        if fetch.cancelled():  # a reconnect: ask again at once, same offset
            return True
        exc = fetch.exception()
        if isinstance(exc, TelegramApiError) and exc.retry_after:
            log.warning("telegram: getUpdates rate limited for %ss", exc.retry_after)
            await self._pause(exc.retry_after)
            return True
        if isinstance(exc, TelegramApiError) and exc.status == 409:
            log.error(
                "telegram: getUpdates refused (%s): a webhook is set (use mode = 'webhook', or "
                "deleteWebhook) or another process polls this bot",
                exc,
            )
            return False
        if exc is not None:
            log.warning("telegram: getUpdates failed, will retry: %s", exc)
            return False
        for update in fetch.result() or []:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            try:
                await self._handle_update(update if isinstance(update, dict) else {})
            except Exception:
                # not committed: keep the offset, so Telegram hands this update out again
                log.exception("telegram: update %s not stored; will retry", update_id)
                return False
            if isinstance(update_id, int):
                # the ledger has it: only now may Telegram forget it (at the next getUpdates)
                self.offset = update_id + 1
        return True

    async def _handle_update(self, update: dict[str, Any]) -> None:
        """Ingest one update (or refuse it); returns only once it needs no re-delivery.

        Raises only when the ingest itself failed: then the update must come back.
        """
        assert self._ctx is not None and self.settings is not None
        if "callback_query" in update:  # a button: its answer text, ingested like a message
            click = buttons.parse_click(update)
            if click is not None and self._api is not None:
                allowed = frozenset(self.settings.allowed_users)
                ok = await buttons.handle_click(self._api, self._ctx, allowed, click, self._spawn)
                self.refused += not ok  # a stranger's click: counted like their messages
            return
        msg = parse_update(update)
        if msg is None:
            return
        if msg.user_id is None or msg.user_id not in self.settings.allowed_users:
            self.refused += 1
            log.warning(
                "telegram: refused a message from unauthorised user %s in chat %s",
                msg.user_id,
                msg.chat_id,
            )
            # once per user: a stranger cannot make the bot spam a chat
            if self.settings.unauthorised_reply and msg.user_id not in self._answered:
                if len(self._answered) > 10_000:  # bounded even under a swarm of strangers
                    self._answered.clear()
                self._answered.add(msg.user_id)
                self._spawn(self._notice(msg.chat_id, msg.message_id, NOT_AUTHORISED))
            return
        if msg.text is None and not msg.files:
            log.info("telegram: message %s has no text; told the sender", msg.message_id)
            self._spawn(self._notice(msg.chat_id, msg.message_id, TEXT_ONLY))
            return
        assert self._api is not None
        try:
            async with fetch(self._api, msg.files, self._ctx) as attachments:
                result = await self._ctx.ingest(
                    str(msg.chat_id),
                    str(msg.user_id),
                    msg.text or "",  # a photo without caption is still a message
                    key=message_key(msg.chat_id, msg.message_id),
                    meta=msg.meta,
                    **({"attachments": attachments} if attachments else {}),  # older cores
                )
        except (AttachmentTooLarge, TelegramApiError) as exc:  # refused: tell the sender
            if isinstance(exc, TelegramApiError) and (exc.status >= 500 or exc.status == 429):
                raise  # Telegram's trouble, not the file's: the update comes back
            text = str(exc) if isinstance(exc, AttachmentTooLarge) else f"Not delivered: {exc}"
            self._spawn(self._notice(msg.chat_id, msg.message_id, text))
            return
        except IdempotencyConflict as exc:
            # same key, other text: the ledger recorded the refusal; nothing to re-deliver
            log.warning("telegram: %s", exc)
            return
        except Unroutable as exc:  # no agent takes it: tell the sender, never re-deliver
            self._spawn(self._notice(msg.chat_id, msg.message_id, f"Not delivered: {exc}"))
            return
        self._remember(result.message.id, str(msg.chat_id), msg.message_id)

    async def _notice(self, chat_id: int | str, message_id: int, text: str) -> None:
        assert self._api is not None
        try:
            await self._api.call(
                "sendMessage",
                chat_id=chat_id,
                text=text,
                reply_parameters={"message_id": message_id, "allow_sending_without_reply": True},
            )
        except Exception as exc:
            log.debug("telegram: notice to %s not sent: %s", chat_id, exc)

    def _remember(self, ledger_id: int, chat: str, message_id: int) -> None:
        remember(self._origins, ledger_id, (chat, message_id))

    async def _origin(self, receipt: Receipt) -> tuple[str, int] | None:
        """(chat, telegram message id) of the sender's message: memory, receipt, ledger."""
        found = self._origins.get(receipt.message_id)
        if found is not None:
            return found
        target = reply_target(receipt.platform_message_id)  # the bridge passes our key
        if target is None and self._ctx is not None and self._ctx.ledger is not None:
            message = await self._ctx.ledger.get(receipt.message_id)
            target = reply_target(getattr(message, "platform_id", None))
        return None if target is None else (receipt.conversation, target)

    # ------------------------------------------------------------------ sending

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one relay chunk in parts of ≤ 4096 UTF-16 units; return the first message id.

        The relay records each chunk the platform accepted (``parts_sent``) and hands us the
        chunk's index in ``item.parts_sent``, so a retry resumes after what the chat already
        has. Only the reply's very first message quotes the sender's message. Within one chunk,
        sub-parts already sent in this process are not sent again after a 429 on a later one.
        """
        if self._api is None or self.settings is None:
            raise to_delivery_error(TelegramNetworkError("telegram channel not started"))
        digest = hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        index = item.parts_sent
        key = f"{item.idem_key}:{index}:{digest}"
        sent = self._progress.setdefault(key, [])
        chat: int | str = chat_ref(item.conversation)
        markup = buttons.keyboard(item)  # a permission question's Allow / Deny
        try:
            parts = chunk_text(item.text, MAX_MESSAGE_LENGTH) or [EMPTY_REPLY]
            for number, part in enumerate(parts):
                if number < len(sent):
                    continue
                first = index == 0 and number == 0
                reply = reply_target(item.reply_to) if first else None
                keys = markup if number == len(parts) - 1 else None
                chat, message_id = await send_part(
                    self._api, self.settings, chat, part, reply, keys
                )
                sent.append(message_id)
        except (TelegramApiError, TelegramNetworkError) as exc:
            raise self._failed(item, key, exc) from None
        self._progress.pop(key, None)
        return sent[0]

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload a file the relay checked and read (``uploads``): a photo or a document,
        quoting the sender's message; a caption too long for Telegram follows as text."""
        if self._api is None or self.settings is None:
            raise to_delivery_error(TelegramNetworkError("telegram channel not started"))
        key = f"{item.idem_key}:file"
        sent = self._progress.setdefault(key, [])  # [upload id, caption part ids…]
        chat: int | str = chat_ref(item.conversation)
        caption, rest = split_caption(file.caption)
        try:
            if not sent:
                reply = reply_target(item.reply_to)
                timeout = self.settings.request_timeout
                chat, message_id = await send_file(self._api, timeout, chat, file, caption, reply)
                sent.append(message_id)
            for number, part in enumerate(chunk_text(rest, MAX_MESSAGE_LENGTH) if rest else []):
                if number + 1 < len(sent):
                    continue
                chat, message_id = await send_part(self._api, self.settings, chat, part, None)
                sent.append(message_id)
        except (TelegramApiError, TelegramNetworkError) as exc:
            raise self._failed(item, key, exc) from None
        self._progress.pop(key, None)
        return sent[0]

    def _failed(self, item: OutboxItem, key: str, exc: Exception) -> DeliveryError:
        """What the relay gets; progress is kept for a retry unless the failure is final."""
        error = to_delivery_error(exc)
        if error.error_class is ErrorClass.PERMANENT:
            self._progress.pop(key, None)
        log.warning(
            "telegram: reply %s to %s not delivered (%s): %s",
            item.id,
            item.conversation,
            error.error_class,
            exc,
        )
        return error

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Telegram's own rules (see ``api.classify``); None for errors that are not ours."""
        return classify(exc)

    async def receipt(self, receipt: Receipt) -> None:
        """Reaction / typing on the sender's message; best effort, never raises."""
        if self._receipts is not None:
            await self._receipts.send(receipt)
