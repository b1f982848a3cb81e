"""Replies out: 2,000-character parts with nonces, files uploaded, buttons attached, reconcile.

Only the reply's very first message references the sender's message. Each part has its own
nonce (``enforce_nonce``), so a retry of a part Discord already has returns that message
instead of posting it twice; ``reconcile`` finds a part in doubt by nonce or text, and
``reconcile_file`` an upload by its file name and caption. A file (``deliver_file``) comes
checked and read by the relay: its bytes go with the caption's first 2,000 characters, the
rest of the caption follows as messages.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import itertools
from typing import Any

import discord
from agentbridge.delivery.actions import reply_actions
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    DeliveryError,
    ErrorClass,
    OutFile,
    Receipt,
    Reconciled,
)

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


def parts_of(item: OutboxItem) -> list[str]:
    """The Discord messages one relay chunk becomes."""
    return chunk_text(item.text, MAX_MESSAGE_LENGTH) or [EMPTY_REPLY]


def caption_parts(file: OutFile) -> list[str]:
    """The messages of an upload: the file with the first (maybe empty), then the rest."""
    return chunk_text(file.caption, MAX_MESSAGE_LENGTH) or [""]


def file_seed(item: OutboxItem, file: OutFile) -> str:
    """What an upload's nonces derive from (never equal to a text part's)."""
    return f"{item.idem_key}\0file\0{file.name}"


class Sending(ChannelState):
    """``deliver``, ``deliver_file``, the two reconciles, ``classify_error``, ``receipt``."""

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one relay chunk (split again at 2,000 characters); return the first id.

        A permission question carries its buttons on the last message.
        """
        channel_id = self._target(item)
        digest = hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        key = f"{item.idem_key}:{item.parts_sent}:{digest}"
        return await self._post(item, channel_id, key, item.idem_key, parts_of(item), None)

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload ``file`` (checked and read by the relay) with its caption; the first id."""
        channel_id = self._target(item)
        key = f"{item.idem_key}:file"
        return await self._post(
            item, channel_id, key, file_seed(item, file), caption_parts(file), file
        )

    def _target(self, item: OutboxItem) -> int:
        if self.client is None or self.settings is None:
            raise DeliveryError("discord channel not started", ErrorClass.TRANSIENT)
        if not item.conversation.isdigit():
            raise DeliveryError(f"discord: not a channel id: {item.conversation!r}")
        return int(item.conversation)

    async def _post(
        self,
        item: OutboxItem,
        channel_id: int,
        key: str,
        seed: str,
        parts: list[str],
        upload: OutFile | None,
    ) -> str:
        """Send ``parts`` in order, skipping those a failed attempt already sent (``key``)."""
        actions = reply_actions(item)
        sent = self._progress.setdefault(key, [])
        try:
            for number, part in enumerate(parts):
                if number < len(sent):
                    continue
                first = item.parts_sent == 0 and number == 0
                extra: dict[str, Any] = {}
                if upload is not None and number == 0:
                    extra["file"] = discord.File(io.BytesIO(upload.data), filename=upload.name)
                if actions and number == len(parts) - 1:
                    extra["view"] = answer_view(actions)
                target = reply_target(item.reply_to) if first else None
                nonce = nonce_for(seed, item.parts_sent, number, part)
                uses = self._nonces.get(nonce, 0)  # the same part sent again on purpose
                nonce = nonce if not uses else nonce_for(nonce, uses, number, part)
                message = await asyncio.wait_for(
                    self._send(channel_id, part, nonce, target, **extra), self.timeout
                )
                remember(self._nonces, nonce_for(seed, item.parts_sent, number, part), uses + 1)
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
        parts = parts_of(item)
        found, complete = await self._find(item, item.idem_key, parts, None)
        if len(found) == len(parts):
            return Reconciled(True, found[0])
        if not found and complete:
            return Reconciled(False)  # the whole history since before the send: not there
        return Reconciled(None)

    async def reconcile_file(self, item: OutboxItem, file: OutFile) -> Reconciled:
        """Did the upload land? Our message carrying ``file.name`` with the caption's nonce
        or text, since the row was made. Must not send; raises when Discord cannot be read.

        The file there but a later caption part missing: those parts never went (each is
        sent only after the one before returned), so the answer is "not there" and the
        relay's new attempt sends only them (this attempt's progress says the file is up).
        """
        parts = caption_parts(file)
        found, complete = await self._find(item, file_seed(item, file), parts, file.name)
        if len(found) == len(parts):
            return Reconciled(True, found[0])
        if 0 in found:
            landed = itertools.takewhile(lambda n: n in found, range(len(parts)))
            self._progress[f"{item.idem_key}:file"] = [found[n] for n in landed]
            return Reconciled(False)
        return Reconciled(False) if not found and complete else Reconciled(None)

    async def _find(
        self, item: OutboxItem, seed: str, parts: list[str], file_name: str | None
    ) -> tuple[dict[int, str], bool]:
        """(part number → message id of ours matching it, whether the scan saw it all)."""
        if self.client is None or self.bot_id is None:
            raise RuntimeError("discord channel not started")
        nonces = [nonce_for(seed, item.parts_sent, n, p) for n, p in enumerate(parts)]
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
            carries = file_name in {a.filename for a in message.attachments}
            for number, (nonce, part) in enumerate(zip(nonces, parts, strict=True)):
                if file_name is not None and number == 0 and not carries:
                    continue  # the upload's message carries that file
                if str(message.nonce or "") == nonce or message.content.strip() == part.strip():
                    found.setdefault(number, str(message.id))
        return found, read < RECONCILE_SCAN

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Discord's rules (see ``outbound.classify``); None for errors that are not ours."""
        found = classify(exc)
        return None if found is None else found[0]

    async def receipt(self, receipt: Receipt) -> None:
        """The bot's reaction on the sender's message; best effort, never raises."""
        if self._receipts is not None and self.client is not None:
            await self._receipts.send(receipt)
