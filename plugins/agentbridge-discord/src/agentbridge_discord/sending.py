"""Replies out: 2,000-character parts with nonces, files uploaded, buttons attached, reconcile.

Only the reply's very first message references the sender's message. Each part has its own
nonce (``enforce_nonce``), so a retry of a part Discord already has returns that message
instead of posting it twice; ``reconcile`` finds a part in doubt by nonce or text.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from typing import Any

import discord
from agentbridge.delivery.actions import reply_actions
from agentbridge.delivery.attachments import FileRef, file_ref
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, Receipt, Reconciled

from agentbridge_discord import files
from agentbridge_discord.components import answer_view
from agentbridge_discord.outbound import (
    MAX_MESSAGE_LENGTH,
    chunk_text,
    classify,
    nonce_for,
    remember,
    reply_target,
    to_delivery_error,
)
from agentbridge_discord.state import ChannelState, log

EMPTY_REPLY = "(the agent's reply was empty)"
RECONCILE_SKEW = datetime.timedelta(seconds=10)  # our clock vs Discord's snowflake clock
RECONCILE_SCAN = 500  # messages read back at most to find one reply part


def parts_of(item: OutboxItem, ref: FileRef | None) -> list[str]:
    """The Discord messages one relay chunk becomes (a file: its caption, maybe empty)."""
    if ref is not None:
        return chunk_text(ref.caption, MAX_MESSAGE_LENGTH) or [""]
    return chunk_text(item.text, MAX_MESSAGE_LENGTH) or [EMPTY_REPLY]


class Sending(ChannelState):
    """``deliver``, ``reconcile``, ``classify_error`` and ``receipt``."""

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one relay chunk (split again at 2,000 characters); return the first id.

        A file item uploads its file with the first message; a permission question carries
        its buttons on the last one.
        """
        if self.client is None or self.settings is None:
            raise DeliveryError("discord channel not started", ErrorClass.TRANSIENT)
        if not item.conversation.isdigit():
            raise DeliveryError(f"discord: not a channel id: {item.conversation!r}")
        channel_id = int(item.conversation)
        ref = file_ref(item)
        actions = reply_actions(item)
        parts = parts_of(item, ref)
        digest = hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        key = f"{item.idem_key}:{item.parts_sent}:{digest}"
        sent = self._progress.setdefault(key, [])
        try:
            for number, part in enumerate(parts):
                if number < len(sent):
                    continue
                first = item.parts_sent == 0 and number == 0
                extra: dict[str, Any] = {}
                if ref is not None and number == 0:
                    extra["file"] = files.upload(ref, self.settings.max_upload_bytes)
                if actions and number == len(parts) - 1:
                    extra["view"] = answer_view(actions)
                target = reply_target(item.reply_to) if first else None
                nonce = nonce_for(item.idem_key, item.parts_sent, number, part)
                uses = self._nonces.get(nonce, 0)  # the same part sent again on purpose
                nonce = nonce if not uses else nonce_for(nonce, uses, number, part)
                message = await asyncio.wait_for(
                    self._send(channel_id, part, nonce, target, **extra), self.timeout
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
        self, channel_id: int, text: str, nonce: str, target: int | None, **extra: Any
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
            text or None,
            nonce=nonce,
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=discord.AllowedMentions.none(),  # an agent never pings @everyone
            mention_author=False,
            **extra,
        )

    async def reconcile(self, item: OutboxItem) -> Reconciled:
        """Did this part land? Read the channel since the row was made, for our nonce/text.

        Must not send. Raises (= cannot tell) when Discord cannot be read.
        """
        if self.client is None or self.bot_id is None:
            raise RuntimeError("discord channel not started")
        ref = file_ref(item)
        parts = parts_of(item, ref)
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
            if ref is not None and ref.path.name not in {a.filename for a in message.attachments}:
                continue  # a file's message carries that file
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
