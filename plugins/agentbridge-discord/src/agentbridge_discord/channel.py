"""The Discord channel: gateway events and channel history in, REST messages out.

Discord's gateway has no per-event ack, so "ack" here is the cursor (``cursor.py``): the last
message id per channel that the ledger has. A message is in the ledger before its id is
stored; after a restart or a new gateway session the history since the stored id is read
again, and ingest, idempotent on the Discord message id, makes a message seen live and again
in the catch-up one row. A failed ingest holds its channel's cursor where it was and retries
the catch-up with backoff, so no later message can carry the cursor past a lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

import discord
from agentbridge.config import ConfigError
from agentbridge.ledger.sqlite import IdempotencyConflict
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    ChannelContext,
    ChannelLimits,
    DeliveryError,
    ErrorClass,
    Receipt,
    Reconciled,
)
from agentbridge.supervisor.routing import Unroutable

from agentbridge_discord import client as wiring
from agentbridge_discord.cursor import CursorStore
from agentbridge_discord.inbound import Inbound, Verdict, from_message, strip_mention, verdict
from agentbridge_discord.outbound import (
    MAX_MESSAGE_LENGTH,
    chunk_text,
    classify,
    nonce_for,
    remember,
    reply_target,
    to_delivery_error,
)
from agentbridge_discord.receipts import ReceiptSender
from agentbridge_discord.settings import DiscordSettings, load_token, parse_settings

log = logging.getLogger(__name__)

NOT_AUTHORISED = "Sorry, you are not authorised to use this bot."
EMPTY_REPLY = "(the agent's reply was empty)"
NO_TEXT = "Only text messages reach the agent; this one had no text and was not forwarded."
EMPTY_HINT = (
    "discord: message %s from user %s in channel %s arrived without text (attachments only, "
    "or the bot lacks the Message Content intent: enable it in the Developer Portal → Bot → "
    "Privileged Gateway Intents; see the agentbridge-discord README); the sender was told"
)
INTENT_HINT = (
    "discord: Discord refused the Message Content intent (close code 4014): enable it in the "
    "Developer Portal → Bot → Privileged Gateway Intents, or set "
    "channels.discord.message_content_intent = false (DMs and @mentions still carry text)"
)
RECONCILE_SKEW = datetime.timedelta(seconds=10)  # our clock vs Discord's snowflake clock
RECONCILE_SCAN = 500  # messages read back at most to find one reply part


class DiscordChannel:
    """One bot. ``settings=None`` reads the table from ``ChannelContext.config`` at start."""

    name = "discord"
    limits = ChannelLimits(max_message_length=MAX_MESSAGE_LENGTH, supports_formatting=True)

    def __init__(
        self, settings: DiscordSettings | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self._env = env
        self._ctx: ChannelContext | None = None
        self.client: wiring.BridgeClient | None = None
        self.cursors: CursorStore | None = None
        self._receipts: ReceiptSender | None = None
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._held: set[int] = set()  # channels whose cursor waits for a failed ingest
        self._origins: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._progress: dict[str, list[str]] = {}  # chunk key → ids of sub-parts already sent
        self._nonces: OrderedDict[str, int] = OrderedDict()  # nonce → messages created
        self._answered: set[int] = set()  # refused users already told so
        self._background: set[asyncio.Task[Any]] = set()
        self.refused = 0
        self.ingest_failures = 0
        self.catchups = 0
        self.sessions = 0
        self.fatal: str | None = None
        self.bot_id: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Read the token, log in (REST ``/users/@me``), then run the gateway in a task."""
        if self.settings is None:
            self.settings = parse_settings(dict(ctx.config))
        settings = self.settings
        token = load_token(settings, self._env)
        self._ctx = ctx
        self.cursors = CursorStore(ctx.state_dir)
        if not settings.allowed_users:
            log.warning("discord: allowed_users is empty: every sender will be refused")
        wiring.point_at(settings)
        self.client = wiring.BridgeClient(settings, self._on_message, self._on_session)
        self._receipts = ReceiptSender(self.client, self._origin)
        try:
            await asyncio.wait_for(self.client.login(token), settings.request_timeout)
        except discord.LoginFailure:
            await self.stop()
            raise ConfigError("config: channels.discord: the bot token was rejected") from None
        except (discord.HTTPException, OSError, TimeoutError) as exc:
            await self.stop()
            raise ConfigError(f"config: channels.discord: cannot log in: {exc}") from None
        user = self.client.user
        self.bot_id = user.id if user is not None else None
        log.info("discord: logged in as %s (%s)", user, self.bot_id)
        self._task = asyncio.create_task(self._run(), name="discord-gateway")

    async def _run(self) -> None:
        """The gateway loop; discord.py reconnects and resumes, we only report what ends it."""
        assert self.client is not None
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            self.fatal = INTENT_HINT
            log.error(INTENT_HINT)
        except discord.ConnectionClosed as exc:
            self.fatal = f"discord: the gateway closed the session for good (code {exc.code})"
            log.error("%s: check the token and intents", self.fatal)

    async def stop(self) -> None:
        """Close the gateway and the HTTP session; safe to call twice."""
        client, self.client = self.client, None
        for bg in list(self._background):
            bg.cancel()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if client is not None:
            wiring.restore()

    def status(self) -> dict[str, Any]:
        """A small snapshot for ``agentbridge status``."""
        return {
            "bot_id": self.bot_id,
            "sessions": self.sessions,
            "catchups": self.catchups,
            "channels": len(self.cursors.cursors) if self.cursors else 0,
            "held": sorted(self._held),
            "refused": self.refused,
            "ingest_failures": self.ingest_failures,
            "fatal": self.fatal,
        }

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, channel_id: int) -> asyncio.Lock:
        return self._locks.setdefault(channel_id, asyncio.Lock())

    # ------------------------------------------------------------------ receiving

    async def _on_message(self, message: discord.Message) -> None:
        """A live MESSAGE_CREATE: handled under its channel's lock, in arrival order."""
        msg = from_message(message)
        async with self._lock(msg.channel_id):
            if await self._handle(msg):
                if msg.channel_id not in self._held:
                    self._advance(msg)
            else:
                assert self.cursors is not None
                if self.cursors.get(msg.channel_id) is None:  # a first message: read from it
                    self.cursors.advance(
                        msg.channel_id, msg.message_id - 1, msg.guild_id, msg.parent_id
                    )
                self._hold(msg.channel_id)

    async def _on_session(self, kind: str) -> None:
        """READY or RESUMED: read back every known channel since its cursor."""
        self.sessions += 1
        if self.cursors is None:
            return
        for channel_id in list(self.cursors.cursors):
            self._spawn(self.catch_up(channel_id))

    def _advance(self, msg: Inbound) -> None:
        assert self.cursors is not None
        self.cursors.advance(msg.channel_id, msg.message_id, msg.guild_id, msg.parent_id)

    def _hold(self, channel_id: int) -> None:
        if channel_id not in self._held:
            self._held.add(channel_id)
            self._spawn(self._retry(channel_id))

    async def _retry(self, channel_id: int) -> None:
        """Catch up a held channel until its failed message is in the ledger."""
        delay = 0.5
        while channel_id in self._held:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            await self.catch_up(channel_id)

    async def catch_up(self, channel_id: int) -> bool:
        """Ingest the channel's history after its cursor, oldest first; True if it all went in.

        Holds the channel's lock, so a live event for the channel waits and then finds its
        message already stored (one row, acked twice).
        """
        if self.cursors is None or self.client is None:
            return False
        async with self._lock(channel_id):
            cursor = self.cursors.get(channel_id)
            if cursor is None:
                return True
            self.catchups += 1
            where = self.client.get_partial_messageable(channel_id, guild_id=cursor.guild)
            count = 0
            try:
                async for message in where.history(
                    after=discord.Object(cursor.last), oldest_first=True, limit=None
                ):
                    msg = from_message(message, cursor.guild, cursor.parent)
                    if not await self._handle(msg):
                        self._hold(channel_id)
                        return False
                    self.cursors.advance(channel_id, msg.message_id)
                    count += 1
            except (discord.HTTPException, OSError, TimeoutError) as exc:
                log.warning("discord: catch-up of channel %s stopped: %s", channel_id, exc)
                return False
            if count:
                log.info("discord: caught up %d message(s) in channel %s", count, channel_id)
            self._held.discard(channel_id)
            return True

    async def _handle(self, msg: Inbound) -> bool:
        """Ingest one message (or refuse/ignore it); False only when the ledger failed."""
        assert self._ctx is not None and self.settings is not None
        bot_id = self.bot_id or 0
        decided = verdict(msg, self.settings, bot_id)
        if decided is Verdict.IGNORE:
            return True
        if decided is Verdict.REFUSE:
            self.refused += 1
            log.warning(
                "discord: refused a message from user %s in channel %s (guild %s)",
                msg.author_id,
                msg.channel_id,
                msg.guild_id,
            )
            if self.settings.unauthorised_reply and msg.author_id not in self._answered:
                if len(self._answered) > 10_000:  # bounded even under a swarm of strangers
                    self._answered.clear()
                self._answered.add(msg.author_id)
                self._spawn(self._notice(msg, NOT_AUTHORISED))
            return True
        if decided is Verdict.EMPTY:
            log.warning(EMPTY_HINT, msg.message_id, msg.author_id, msg.channel_id)
            self._spawn(self._notice(msg, NO_TEXT))
            return True
        try:
            result = await self._ctx.ingest(
                str(msg.channel_id),
                str(msg.author_id),
                strip_mention(msg.content, bot_id),
                key=msg.key,
                meta=msg.meta,
            )
        except IdempotencyConflict as exc:  # same id, other text (an edit): recorded, done
            log.warning("discord: %s", exc)
            return True
        except Unroutable as exc:  # no agent takes it: tell the sender, never retry
            self._spawn(self._notice(msg, f"Not delivered: {exc}"))
            return True
        except Exception:
            self.ingest_failures += 1
            log.exception("discord: message %s not stored; will read it again", msg.message_id)
            return False
        remember(self._origins, result.message.id, (msg.channel_id, msg.message_id))
        return True

    async def _notice(self, msg: Inbound, text: str) -> None:
        if self.client is None:
            return
        try:
            where = self.client.get_partial_messageable(msg.channel_id)
            reference = discord.MessageReference(
                message_id=msg.message_id, channel_id=msg.channel_id, fail_if_not_exists=False
            )
            await asyncio.wait_for(
                where.send(text, reference=reference, mention_author=False),
                self.settings.request_timeout if self.settings else 20.0,
            )
        except Exception as exc:
            log.debug("discord: notice to %s not sent: %s", msg.channel_id, type(exc).__name__)

    async def _origin(self, receipt: Receipt) -> tuple[int, int] | None:
        """(channel, Discord message id) of the sender's message: memory, receipt, ledger."""
        found = self._origins.get(receipt.message_id)
        if found is not None:
            return found
        target = reply_target(receipt.platform_message_id)  # the bridge passes our key
        if target is None and self._ctx is not None and self._ctx.ledger is not None:
            message = await self._ctx.ledger.get(receipt.message_id)
            target = reply_target(getattr(message, "platform_id", None))
        if target is None or not receipt.conversation.isdigit():
            return None
        return int(receipt.conversation), target

    # ------------------------------------------------------------------ sending

    def _parts(self, item: OutboxItem) -> list[str]:
        return chunk_text(item.text, MAX_MESSAGE_LENGTH) or [EMPTY_REPLY]

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one relay chunk (split again at 2,000 characters); return the first id.

        Only the reply's very first message references the sender's message. Each part has
        its own nonce (``enforce_nonce``), so a retry of a part Discord already has returns
        that message instead of posting it twice.
        """
        if self.client is None or self.settings is None:
            raise DeliveryError("discord channel not started", ErrorClass.TRANSIENT)
        if not item.conversation.isdigit():
            raise DeliveryError(f"discord: not a channel id: {item.conversation!r}")
        channel_id = int(item.conversation)
        digest = hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        key = f"{item.idem_key}:{item.parts_sent}:{digest}"
        sent = self._progress.setdefault(key, [])
        try:
            for number, part in enumerate(self._parts(item)):
                if number < len(sent):
                    continue
                first = item.parts_sent == 0 and number == 0
                target = reply_target(item.reply_to) if first else None
                nonce = nonce_for(item.idem_key, item.parts_sent, number, part)
                uses = self._nonces.get(nonce, 0)  # the same part sent again on purpose
                nonce = nonce if not uses else nonce_for(nonce, uses, number, part)
                message = await asyncio.wait_for(
                    self._send(channel_id, part, nonce, target), self.settings.request_timeout
                )
                remember(
                    self._nonces, nonce_for(item.idem_key, item.parts_sent, number, part), uses + 1
                )
                sent.append(str(message.id))
        except Exception as exc:
            error = to_delivery_error(exc)
            if error.error_class is ErrorClass.PERMANENT:
                self._progress.pop(key, None)
            log.warning(
                "discord: reply %s to %s not delivered (%s): %s",
                item.id,
                item.conversation,
                error.error_class,
                error,
            )
            raise error from None
        self._progress.pop(key, None)
        return sent[0]

    async def _send(
        self, channel_id: int, text: str, nonce: str, target: int | None
    ) -> discord.Message:
        assert self.client is not None
        where = self.client.get_partial_messageable(channel_id)
        reference = (
            None
            if target is None
            else discord.MessageReference(
                message_id=target, channel_id=channel_id, fail_if_not_exists=False
            )
        )
        return await where.send(
            text,
            nonce=nonce,
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=discord.AllowedMentions.none(),  # an agent never pings @everyone
            mention_author=False,
        )

    async def reconcile(self, item: OutboxItem) -> Reconciled:
        """Did this part land? Read the channel since the row was made, for our nonce/text.

        Must not send. Raises (= cannot tell) when Discord cannot be read.
        """
        if self.client is None or self.bot_id is None:
            raise RuntimeError("discord channel not started")
        parts = self._parts(item)
        nonces = [nonce_for(item.idem_key, item.parts_sent, n, p) for n, p in enumerate(parts)]
        made = datetime.datetime.fromtimestamp(item.created_at, datetime.UTC) - RECONCILE_SKEW
        where = self.client.get_partial_messageable(int(item.conversation))
        found: dict[int, str] = {}
        read = 0
        async for message in where.history(
            after=discord.Object(discord.utils.time_snowflake(made)),
            oldest_first=True,
            limit=RECONCILE_SCAN,
        ):
            read += 1
            if message.author.id != self.bot_id:
                continue
            for number, (nonce, part) in enumerate(zip(nonces, parts, strict=True)):
                if str(message.nonce or "") == nonce or message.content.strip() == part.strip():
                    found.setdefault(number, str(message.id))
        if len(found) == len(parts):
            return Reconciled(True, found[0])
        if not found and read < RECONCILE_SCAN:
            return Reconciled(False)  # the whole history since before the send: not there
        return Reconciled(None)

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Discord's rules (see ``outbound.classify``); None for errors that are not ours."""
        found = classify(exc)
        return None if found is None else found[0]

    async def receipt(self, receipt: Receipt) -> None:
        """The bot's reaction on the sender's message; best effort, never raises."""
        if self._receipts is not None and self.client is not None:
            await self._receipts.send(receipt)
