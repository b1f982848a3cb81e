"""Messages in: live gateway events and channel history, into the ledger before the cursor moves.

Discord's gateway has no per-event ack, so "ack" here is the cursor (``cursor.py``): the last
message id per channel that the ledger has. A message is in the ledger before its id is
stored; after a restart or a new gateway session the history since the stored id is read
again, and ingest, idempotent on the Discord message id, makes a message seen live and again
in the catch-up one row. A failed ingest holds its channel's cursor where it was and retries
the catch-up with backoff, so no later message can carry the cursor past a lost one.
"""

from __future__ import annotations

import asyncio

import discord
from agentbridge.ledger.sqlite import IdempotencyConflict
from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge, Receipt
from agentbridge.supervisor.routing import Unroutable

from agentbridge_discord import files
from agentbridge_discord.inbound import Inbound, Verdict, from_message, strip_mention, verdict
from agentbridge_discord.outbound import remember, reply_target
from agentbridge_discord.state import ChannelState, log

NOT_AUTHORISED = "Sorry, you are not authorised to use this bot."
NO_TEXT = "This message reached the bridge without text or files and was not forwarded."
EMPTY_HINT = (
    "discord: message %s from user %s in channel %s arrived without text (the bot lacks the "
    "Message Content intent: enable it in the Developer Portal → Bot → Privileged Gateway "
    "Intents; see the agentbridge-discord README); the sender was told"
)


class Receiving(ChannelState):
    """MESSAGE_CREATE, READY/RESUMED catch-up, and the one ingest path of a message."""

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
            self._refuse(msg.author_id, msg.channel_id, msg.guild_id)
            if self.settings.unauthorised_reply and msg.author_id not in self._answered:
                if len(self._answered) > 10_000:  # bounded even under a swarm of strangers
                    self._answered.clear()
                self._answered.add(msg.author_id)
                self._spawn(self._notice(msg.channel_id, msg.message_id, NOT_AUTHORISED))
            return True
        if decided is Verdict.EMPTY:
            log.warning(EMPTY_HINT, msg.message_id, msg.author_id, msg.channel_id)
            self._spawn(self._notice(msg.channel_id, msg.message_id, NO_TEXT))
            return True
        try:
            attachments: list[Attachment] = []
            if msg.attachments:
                assert self.client is not None
                cap = min(self.settings.max_attachment_bytes, self._ctx.max_attachment_bytes)
                attachments = await files.download(self.client.http, msg.attachments, cap)
            result = await self._ctx.ingest(
                str(msg.channel_id),
                str(msg.author_id),
                strip_mention(msg.content, bot_id),  # "" for files alone: still a message
                key=msg.key,
                meta=msg.meta,
                **files.keyword(attachments),  # only with files: older cores lack it
            )
        except (files.FileRefused, AttachmentTooLarge) as exc:  # the file's fault: say so
            self._spawn(self._notice(msg.channel_id, msg.message_id, str(exc)))
            return True
        except IdempotencyConflict as exc:  # same id, other text (an edit): recorded, done
            log.warning("discord: %s", exc)
            return True
        except Unroutable as exc:  # no agent takes it: tell the sender, never retry
            self._spawn(self._notice(msg.channel_id, msg.message_id, f"Not delivered: {exc}"))
            return True
        except Exception:
            self.ingest_failures += 1
            log.exception("discord: message %s not stored; will read it again", msg.message_id)
            return False
        remember(self._origins, result.message.id, (msg.channel_id, msg.message_id))
        return True

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
