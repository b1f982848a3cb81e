"""The Lark/Feishu channel: long-connection events and message lists in, OpenAPI posts out.

The rules that make it lossless:
- a long-connection event is acked (the SDK's reply frame with code 200) only after
  ``ctx.ingest`` returned, i.e. after the ledger commit (see ``longconn``); a crash in between
  makes Lark push the event again, and ingest, idempotent on the Lark message id, turns the
  second copy into a no-op;
- after a start or a reconnect, every chat and thread heard from is read back from its
  cursor (``catchup``), so messages sent while the bridge was down are ingested too;
- a failed ingest holds its chat's cursor where it was and retries the catch-up with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Coroutine
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.delivery.actions import reply_actions
from agentbridge.ledger.store import IdempotencyConflict
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.protocols import (
    AttachmentTooLarge,
    ChannelContext,
    ChannelLimits,
    DeliveryError,
    ErrorClass,
    OutFile,
    Receipt,
    Reconciled,
)
from agentbridge.supervisor.routing import Unroutable

from agentbridge_lark import catchup, files
from agentbridge_lark.api import LarkApi, LarkApiError
from agentbridge_lark.buttons import from_click
from agentbridge_lark.cursor import CursorStore
from agentbridge_lark.inbound import (
    LarkMessage,
    Verdict,
    from_event,
    split_conversation,
    verdict,
)
from agentbridge_lark.longconn import LongConnection
from agentbridge_lark.outbound import (
    MAX_MESSAGE_LENGTH,
    NO_TEXT,
    RATE_LIMIT_CODES,
    classify,
    fit,
    notice,
)
from agentbridge_lark.receipts import ReceiptSender
from agentbridge_lark.resources import FILE_MAX
from agentbridge_lark.sending import EMPTY_REPLY, Sender
from agentbridge_lark.settings import LarkSettings, load_credentials, parse_settings

log = logging.getLogger(__name__)

#: Lark codes that mean the app's credentials are wrong: the bridge cannot run this channel
BAD_CREDENTIALS = frozenset({10003, 10014, 99991663, 99991661, 99991668, 99991664})
#: the chat is gone for the bot: stop catching it up
GONE = frozenset({230002, 232009, 232011})
RECONCILE_SKEW = 10  # seconds: our clock vs Lark's
DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before a file download gives up
#: live channels, so the module-level ``host_woke`` hook can reach them
LIVE: weakref.WeakSet[LarkChannel] = weakref.WeakSet()


class LarkChannel:
    """One Lark app. ``settings=None`` reads the table from ``ChannelContext.config``."""

    name = "lark"
    limits = ChannelLimits(
        max_message_length=MAX_MESSAGE_LENGTH, supports_formatting=True, max_file_bytes=FILE_MAX
    )

    def __init__(
        self, settings: LarkSettings | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self._env = env
        self._ctx: ChannelContext | None = None
        self.api: LarkApi | None = None
        self.cursors: CursorStore | None = None
        self._conn: LongConnection | None = None
        self._receipts: ReceiptSender | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: set[str] = set()  # containers whose cursor waits for a failed ingest
        self._sender: Sender | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.app_id: str | None = None
        self.bot_open_id: str | None = None
        self.refused = 0
        self.ingest_failures = 0
        self.catchups = 0
        self.reconnects = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Check the credentials (the bot's own info), start the long connection, catch up."""
        if self.settings is None:
            self.settings = parse_settings(dict(ctx.config))
        settings = self.settings
        app_id, secret = load_credentials(settings, self._env)
        self._ctx = ctx
        self.app_id = app_id
        self.cursors = CursorStore(ctx.state_dir)
        self.api = LarkApi(app_id, secret, settings.base_url, settings.request_timeout)
        self._receipts = ReceiptSender(self.api)
        self._sender = Sender(self.api, settings, self.cursors)
        if not settings.allowed_users:
            log.warning("lark: allowed_users is empty: every sender will be refused")
        await self._who_am_i()
        loop = asyncio.get_running_loop()
        self._conn = LongConnection(
            app_id,
            secret,
            settings.base_url,
            loop,
            self._on_event,
            self._on_reconnected,
            self._on_click,
        )
        self._conn.start()
        LIVE.add(self)
        if settings.catch_up:
            self._catch_up_all()

    def wake(self) -> None:
        """The ``host_woke`` hook (the bridge's loop): a new connection, and catch up now."""
        if self._conn is not None:
            self._conn.reconnect()
        if self.settings is not None and self.settings.catch_up:
            self._catch_up_all()

    async def _who_am_i(self) -> None:
        assert self.api is not None
        try:
            bot = await self.api.bot_info()
        except LarkApiError as exc:
            if exc.code in BAD_CREDENTIALS:
                raise ConfigError(
                    f"config: channels.lark: the app id/secret were rejected (code {exc.code})"
                ) from None
            log.warning("lark: bot info not read (will retry): %s", exc)
            self._spawn(self._who_am_i_later())
            return
        except Exception as exc:
            log.warning("lark: OpenAPI unreachable (will retry): %s", type(exc).__name__)
            self._spawn(self._who_am_i_later())
            return
        self.bot_open_id = str(bot.get("open_id") or "") or None
        log.info("lark: connected as %s (%s)", bot.get("app_name"), self.bot_open_id)

    async def _who_am_i_later(self) -> None:
        delay = 2.0
        while self.bot_open_id is None and self.api is not None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
            with contextlib.suppress(Exception):
                bot = await self.api.bot_info()
                self.bot_open_id = str(bot.get("open_id") or "") or None

    async def stop(self) -> None:
        """Close the long connection and cancel background work; safe to call twice."""
        LIVE.discard(self)
        conn, self._conn = self._conn, None
        for task in list(self._background):
            task.cancel()
        if conn is not None:
            await asyncio.to_thread(conn.close)

    def status(self) -> dict[str, Any]:
        """A small snapshot for ``agentbridge status``."""
        conn = self._conn
        return {
            "app_id": self.app_id,
            "bot_open_id": self.bot_open_id,
            "connected": conn.connected if conn else False,
            "events": conn.events if conn else 0,
            "reconnects": self.reconnects,
            "catchups": self.catchups,
            "chats": len(self.cursors.cursors) if self.cursors else 0,
            "held": sorted(self._held),
            "refused": self.refused,
            "ingest_failures": self.ingest_failures,
            "fatal": conn.fatal if conn else None,
        }

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, container: str) -> asyncio.Lock:
        chat = split_conversation(container)[0]  # a chat and its threads share one lock
        return self._locks.setdefault(chat, asyncio.Lock())

    # ------------------------------------------------------------------ receiving

    async def _on_event(self, payload: dict[str, Any]) -> None:
        """One event from the long connection; returns once it is safe to ack, else raises."""
        msg = from_event(payload, self.bot_open_id)
        if msg is None:
            return
        home = catchup.container_of(msg)
        async with self._lock(home):
            if await self._handle(msg):
                if home not in self._held:
                    self._advance(msg)
                return
            self._hold(home, msg)
        raise RuntimeError(f"lark: message {msg.message_id} not stored")  # → no ack

    async def _on_click(self, payload: dict[str, Any]) -> str:
        """A button click: ingested as its answer from the clicker (raises = no ack)."""
        assert self._ctx is not None and self.settings is not None
        click = from_click(payload)
        if click is None:
            return "This button is not one of ours."
        if not click.allowed(self.settings):
            self.refused += 1
            log.warning("lark: refused a click from %s in chat %s", click.open_id, click.chat_id)
            return "You are not authorised to answer this."
        try:  # the same click pushed again: the same key and text, one row
            await self._ctx.ingest(
                click.conversation,
                click.open_id or click.user_id or "",
                click.answer,
                key=click.key,
                meta={"card_message_id": click.card_id, "event_id": click.event_id},
            )
        except Unroutable as exc:
            return f"Not delivered: {exc}"
        return f"Sent: {click.answer}"

    def _on_reconnected(self) -> None:
        """The long connection is back: events sent meanwhile may never be pushed."""
        self.reconnects += 1
        if self.settings is not None and self.settings.catch_up:
            self._catch_up_all()

    def _catch_up_all(self) -> None:
        if self.cursors is not None:
            for container in sorted(self.cursors.cursors):
                self._spawn(self.catch_up(container))

    def _advance(self, msg: LarkMessage) -> None:
        assert self.cursors is not None
        home = catchup.container_of(msg)
        self.cursors.advance(home, msg.create_time, msg.message_id, msg.chat_type, msg.thread_id)

    def _hold(self, container: str, msg: LarkMessage) -> None:
        assert self.cursors is not None
        if self.cursors.get(container) is None:  # a first message: read from just before it
            self.cursors.advance(container, msg.create_time - 1, "", msg.chat_type, msg.thread_id)
        if container not in self._held:
            self._held.add(container)
            self._spawn(self._retry(container))

    async def _retry(self, container: str) -> None:
        """Catch up a held container until its failed message is in the ledger."""
        delay = 0.5
        while container in self._held:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            await self.catch_up(container)

    async def catch_up(self, container: str) -> bool:
        """Ingest ``container``'s messages after its cursor, oldest first; True if all went in."""
        if self.cursors is None or self.api is None:
            return False
        async with self._lock(container):
            self.catchups += 1
            count = 0
            try:
                async for msg in catchup.missed(
                    self.api, self.cursors, container, self.bot_open_id
                ):
                    if not await self._handle(msg):
                        self._hold(container, msg)
                        return False
                    self._advance(msg)
                    count += 1
            except LarkApiError as exc:
                if exc.code in GONE:
                    log.warning("lark: %s is gone for the bot (%s); not read again", container, exc)
                    self.cursors.forget(container)
                    self._held.discard(container)
                    return True
                log.warning("lark: catch-up of %s stopped: %s", container, exc)
                return False
            except Exception as exc:
                log.warning("lark: catch-up of %s stopped: %s", container, type(exc).__name__)
                return False
            if count:
                log.info("lark: caught up %d message(s) in %s", count, container)
            self._held.discard(container)
            return True

    def _allowed_text(self, msg: LarkMessage) -> Verdict:
        assert self.settings is not None and self.cursors is not None
        return verdict(msg, self.settings, self.bot_open_id, self.cursors.threads())

    async def _handle(self, msg: LarkMessage) -> bool:
        """Ingest one message (or refuse/ignore it); False only when the ledger failed."""
        assert self._ctx is not None and self.settings is not None and self.cursors is not None
        decided = self._allowed_text(msg)
        if decided is Verdict.IGNORE and self.bot_open_id is None and msg.mentions_anyone:
            log.warning("lark: the bot's own id is not known yet; message %s waits", msg.key)
            return False  # maybe a mention of the bot: not acked, read again later
        if decided is Verdict.IGNORE:
            return True
        if decided is Verdict.REFUSE:
            self.refused += 1
            # ids only: a stranger's text never reaches a log line
            log.warning(
                "lark: refused a message from %s (tenant %s) in chat %s",
                msg.open_id or msg.user_id,
                msg.tenant,
                msg.chat_id,
            )
            return True
        if decided is Verdict.EMPTY:
            log.warning("lark: message %s had no text; not forwarded", msg.message_id)
            assert self.api is not None
            where = msg.conversation(self.settings.reply_in_thread)
            self._spawn(notice(self.api, where, msg.message_id, NO_TEXT))
            return True
        conversation = msg.conversation(self.settings.reply_in_thread)
        assert self.api is not None
        timeout = max(self.settings.request_timeout, DOWNLOAD_TIMEOUT)
        try:
            async with files.fetch(self.api, msg, self._ctx, timeout) as attachments:
                extra: dict[str, Any] = {"attachments": attachments} if attachments else {}
                await self._ctx.ingest(
                    conversation,
                    msg.open_id or msg.user_id or "",
                    msg.text,  # a picture without text is still a message
                    key=msg.key,
                    meta=msg.meta,
                    **extra,
                )
        except AttachmentTooLarge as exc:  # refused: tell the sender, never read it again
            self._spawn(notice(self.api, conversation, msg.message_id, str(exc)))
            return True
        except files.FetchFailed as exc:  # Lark refuses the file: final unless it is its trouble
            if exc.status >= 500 or exc.status == 429 or exc.code in RATE_LIMIT_CODES:
                self.ingest_failures += 1
                log.warning("lark: files of %s not fetched (will retry): %s", msg.key, exc)
                return False
            text = f"Not delivered: the file could not be fetched ({exc})"
            self._spawn(notice(self.api, conversation, msg.message_id, text))
            return True
        except IdempotencyConflict as exc:  # same id, other text (an edit): recorded, done
            log.warning("lark: %s", exc)
            return True
        except Unroutable as exc:
            log.warning("lark: message %s not routed: %s", msg.key, exc)
            return True
        except Exception:
            self.ingest_failures += 1
            log.exception("lark: message %s not stored; it will be read again", msg.key)
            return False
        if ":" in conversation and self.cursors.get(conversation) is None:
            # a thread the bot now takes part in: its replies count without a mention
            self.cursors.advance(
                conversation, msg.create_time, msg.message_id, msg.chat_type, msg.thread_id
            )
        return True

    # ------------------------------------------------------------------ sending

    async def deliver(self, item: OutboxItem) -> str | None:
        """Post one relay part into its chat or thread (``sending``); the first message id."""
        if self._sender is None:
            raise DeliveryError("lark channel not started", ErrorClass.TRANSIENT)
        return await self._sender.deliver(item, reply_actions(item))

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload one file the relay checked and read, then post it (``sending``)."""
        if self._sender is None:
            raise DeliveryError("lark channel not started", ErrorClass.TRANSIENT)
        return await self._sender.deliver_file(item, file)

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Progress (``EditingChannel``): one status post, updated in place (``sending``)."""
        if self._sender is None:
            raise RuntimeError("lark channel not started")
        return await self._sender.edit_message(message, text, status_id)

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Lark's rules (see ``outbound.classify``); None for errors that are not ours."""
        found = classify(exc)
        return None if found is None else found[0]

    async def reconcile(self, item: OutboxItem) -> Reconciled:
        """Did this part land? Read the chat (or thread) since the row was made for our post.

        Must not send. Raises (= cannot tell) when Lark cannot be read.
        """
        if self.api is None or self.cursors is None:
            raise RuntimeError("lark channel not started")
        pieces = fit(item.text or EMPTY_REPLY)
        cursor = self.cursors.get(item.conversation)
        since = int(item.created_at) - RECONCILE_SKEW
        found, complete = await catchup.find_own(
            self.api, item.conversation, cursor.thread_id if cursor else None, since, pieces
        )
        if len(found) == len(pieces):
            return Reconciled(True, found[0])
        if not found and complete:
            return Reconciled(False)  # the whole list since before the send: not there
        return Reconciled(None)

    async def receipt(self, receipt: Receipt) -> None:
        """The bot's reaction on the sender's message; best effort, never raises."""
        if self._receipts is not None:
            await self._receipts.send(receipt)
