"""The outbox relay: sends write-ahead replies through their channels, at most once.

Event-driven (woken by the ledger when a reply is queued), it reserves each attempt in the
ledger before calling the platform, chunks to the channel's declared limit, honours
``retry_after``, classifies errors (hook → channel → built-in rules), backs off 5 s / 25 s /
2 min / 10 min with jitter, stops at the retry cap, and expires rows past their TTL.

Only an error that proves the platform did not act is retried. A send whose outcome is
unknown (the answer was lost after the request went out) ends ``unknown``: never resent
blindly; a channel that can look it up reconciles it, otherwise a human decides.

Files (``outfiles.py``): on a ``FileChannel`` an agent's file, and a reply that would need
more than ``max_parts`` parts, go as one upload (one part: ``parts_sent`` stays 0 until the
row is ``sent``); a file that cannot go (gone, too big, outside its roots) fails the row for
good and queues a short text instead. A reply already partly sent keeps chunking. An
upload in doubt is looked up only by a channel with ``reconcile_file`` (by name, caption).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import pluggy

from agentbridge.config import OutboxConfig
from agentbridge.crashpoints import crash_point
from agentbridge.delivery.attachments import file_ref
from agentbridge.delivery.classify import classify
from agentbridge.delivery.outfiles import (
    FileRefused,
    FileRoots,
    described,
    read_checked,
    reply_file,
)
from agentbridge.ledger.store import LedgerStore, NotFound, backoff_delay
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    Channel,
    ErrorClass,
    FileChannel,
    FileReconcilingChannel,
    OutFile,
    Reconciled,
    ReconcilingChannel,
)

__all__ = ["RECONCILE_EVERY", "RECONCILE_TIMEOUT", "OutboxRelay", "chunk_text", "classify"]

log = logging.getLogger(__name__)

#: how long one ``reconcile`` may take, and how often rows still in doubt are asked again
RECONCILE_TIMEOUT = 30.0
RECONCILE_EVERY = 30.0


def chunk_text(text: str, limit: int) -> list[str]:
    """Split a reply into parts of at most ``limit`` characters, at line breaks when possible."""
    if limit <= 0 or len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip("\n") if cut < len(rest) else ""
    if rest:
        parts.append(rest)
    return parts


class OutboxRelay:
    """Delivers due outbox rows; one instance per supervisor."""

    def __init__(
        self,
        ledger: LedgerStore,
        channels: Mapping[str, Channel],
        config: OutboxConfig,
        pm: pluggy.PluginManager | None = None,
        on_sent: Callable[[OutboxItem], None] | None = None,
        on_failed: Callable[[OutboxItem, str], None] | None = None,
        files: FileRoots | None = None,
    ) -> None:
        self.ledger = ledger
        self.files = files or FileRoots({})
        self.channels = channels
        self.config = config
        self.pm = pm
        self.on_sent = on_sent
        self.on_failed = on_failed
        #: ``(item, result)`` after each attempt: sent, retry, failed, unknown (metrics)
        self.on_attempt: Callable[[OutboxItem, str], None] | None = None
        self.wake = asyncio.Event()
        #: unknown rows a channel could not reconcile yet (its lookup failed): asked again
        self._in_doubt: set[int] = set()
        self.reconcile_every = RECONCILE_EVERY
        #: a fleet node claims only replies of the channels it runs (supervisor/fleet.py)
        self.only: Callable[[], list[str]] | None = None

    def poke(self) -> None:
        """Something may be due now."""
        self.wake.set()

    async def startup(self) -> int:
        """Rows a dead bridge left ``sending`` become ``unknown`` (never resent blindly)."""
        unknown = await self.ledger.recover_sending()
        for item in unknown:
            log.warning(
                "reply %s (message %s) state unknown after a crash while sending;"
                " not resent: check the platform, then `agentbridge outbox retry %s`"
                " (resend) or `agentbridge outbox sent %s` (it arrived)",
                item.id,
                item.message_id,
                item.id,
                item.id,
            )
        # every unknown row, old or new, of a channel that can look it up is asked once
        for item in await self.ledger.list_replies(state="unknown"):
            channel = self.channels.get(item.channel)
            if channel is not None and self._can_ask(channel, item):
                self._in_doubt.add(item.id)
        return len(unknown)

    async def run(self) -> None:
        """Deliver forever: drain what is due, then sleep until woken or the next due time."""
        await self.startup()
        drain_deadline = time.monotonic() + self.config.drain_budget_seconds
        last_expire = 0.0
        last_reconcile = 0.0
        while True:
            if time.monotonic() - last_expire > 60:
                last_expire = time.monotonic()
                expired = await self.ledger.expire_replies()
                if expired:
                    log.warning("%d replies expired before they could be sent", expired)
            if self._in_doubt and time.monotonic() - last_reconcile > self.reconcile_every:
                last_reconcile = time.monotonic()
                await self.reconcile_in_doubt()
            self.wake.clear()
            only = self.only() if self.only is not None else None
            item = await self.ledger.claim_due_reply(only) if only != [] else None
            if item is not None:
                await self.deliver(item)
                if time.monotonic() > drain_deadline:
                    await asyncio.sleep(0)  # after the startup budget: stay fair to the loop
                continue
            due = await self.ledger.next_reply_due_at() if only is None else await self._due(only)
            timeout = 30.0 if due is None else max(0.01, min(30.0, due - self.ledger.clock()))
            if self._in_doubt:
                timeout = min(timeout, self.reconcile_every)
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: 3.11's wait_for can drop a cancel that
                # lands in the same step as a wake, and the relay would never stop
                async with asyncio.timeout(timeout):
                    await self.wake.wait()

    async def _due(self, channels: list[str]) -> float | None:
        """When the next reply of ``channels`` is due (a fleet node's own channels)."""
        if not channels:
            return None
        soon = self.ledger.clock() + 30.0  # the longest the loop sleeps anyway
        ahead = await self.ledger.next_due_reply(now=soon, channels=channels)
        return None if ahead is None else ahead.scheduled_at

    async def deliver(self, item: OutboxItem) -> None:
        """One reserved attempt (``sending`` already committed): call the platform, record."""
        channel = self.channels.get(item.channel)
        if channel is None:
            await self.ledger.mark_failed(item.id, f"no channel {item.channel!r} is configured")
            if self.on_failed:
                self.on_failed(item, "channel not configured")
            return
        crash_point("during_send")
        if self.as_file(item, channel):
            await self._deliver_file(item, channel)
            return
        parts = chunk_text(item.text, channel.limits.max_message_length)
        platform_ids: list[str | None] = [item.platform_message_id]
        chunk = item
        try:
            for index in range(item.parts_sent, len(parts)):
                # parts_sent tells the channel which part this is (0 = the reply's first)
                chunk = replace(item, text=parts[index], parts_sent=index)
                platform_id = await channel.deliver(chunk)
                platform_ids.append(platform_id)
                if len(parts) > 1:  # record progress: a retry must not resend earlier parts
                    await self.ledger.mark_part_sent(item.id, index + 1, platform_id)
        except Exception as exc:
            await self._failed_attempt(item, channel, exc, chunk, len(parts))
            return
        first = next((pid for pid in platform_ids if pid), None)
        sent = await self.ledger.mark_sent(item.id, first)
        self._attempted(item, "sent")
        log.info(
            "message %s: reply %s sent via %s (%s part(s))",
            item.message_id,
            item.id,
            item.channel,
            len(parts),
        )
        if self.on_sent:
            self.on_sent(sent)

    def as_file(self, item: OutboxItem, channel: Channel) -> bool:
        """Does this row go out as one upload? (The same answer on every attempt.)"""
        limit = channel.limits.max_file_bytes
        if not isinstance(channel, FileChannel) or limit <= 0:
            return False
        if file_ref(item) is not None:
            return True
        max_parts = self.config.max_parts
        return (
            max_parts > 0
            and item.parts_sent == 0
            and len(item.text) > max_parts * (channel.limits.max_message_length // 2)
            and len(chunk_text(item.text, channel.limits.max_message_length)) > max_parts
            and len(item.text.encode("utf-8", "replace")) <= limit
        )

    async def _deliver_file(self, item: OutboxItem, channel: Channel) -> None:
        assert isinstance(channel, FileChannel)
        ref = file_ref(item)
        try:
            if ref is None:
                upload: OutFile = reply_file(item.text)
            else:
                roots = await self.files.for_item(item, self.ledger)
                limit = channel.limits.max_file_bytes
                state = self.files.state_dir
                upload = await asyncio.to_thread(
                    read_checked, ref, roots, limit, item.channel, state
                )
        except FileRefused as refused:
            await self._refused(item, refused)
            return
        try:
            platform_id = await channel.deliver_file(item, upload)
        except Exception as exc:
            await self._failed_attempt(item, channel, exc, item, 1, upload=upload)
            return
        sent = await self.ledger.mark_sent(item.id, platform_id)
        log.info(
            "message %s: reply %s sent via %s as the file %s (%d bytes)",
            item.message_id,
            item.id,
            item.channel,
            upload.name,
            len(upload.data),
        )
        if self.on_sent:
            self.on_sent(sent)

    async def _refused(self, item: OutboxItem, refused: FileRefused) -> None:
        """Never sendable: the user gets a short text first (keyed: queued once), then the
        row fails with the reason."""
        await self.ledger.enqueue_reply(
            item.channel,
            item.conversation,
            refused.tell_user,
            f"file-refused:{item.id}",
            message_id=item.message_id,
            reply_to=item.reply_to,
        )
        await self.ledger.mark_failed(item.id, f"permanent: {refused}"[:500])
        log.warning("message %s: reply %s not sent: %s", item.message_id, item.id, refused)
        if self.on_failed:
            self.on_failed(item, str(refused))

    async def _failed_attempt(
        self,
        item: OutboxItem,
        channel: Channel,
        exc: Exception,
        chunk: OutboxItem,
        parts: int,
        upload: OutFile | None = None,
    ) -> None:
        error_class, retry_after = classify(exc, channel, self.pm)
        error = f"{type(exc).__name__}: {exc}"[:500]
        final = error_class == ErrorClass.PERMANENT or item.attempts >= self.config.max_retries
        known = "failed" if final else "retry"
        self._attempted(item, "unknown" if error_class == ErrorClass.UNKNOWN else known)
        if error_class == ErrorClass.UNKNOWN:
            await self._unknown(item, channel, error, chunk, parts, upload)
            return
        if error_class == ErrorClass.PERMANENT:
            await self.ledger.mark_failed(item.id, f"permanent: {error}")
        elif item.attempts >= self.config.max_retries:
            await self.ledger.mark_failed(
                item.id, f"gave up after {item.attempts} attempts: {error}"
            )
        else:
            delay = (
                retry_after
                if retry_after is not None
                else backoff_delay(item.attempts, self.config.backoff)
            )
            log.info(
                "message %s: reply %s failed (%s), retry in %.1fs",
                item.message_id,
                item.id,
                error,
                delay,
            )
            await self.ledger.mark_retry(item.id, error, delay)
            return
        log.warning("message %s: reply %s failed for good: %s", item.message_id, item.id, error)
        if self.on_failed:
            self.on_failed(item, error)

    def _attempted(self, item: OutboxItem, result: str) -> None:
        if self.on_attempt is not None:
            self.on_attempt(item, result)

    async def _unknown(
        self,
        item: OutboxItem,
        channel: Channel,
        error: str,
        chunk: OutboxItem,
        parts: int,
        upload: OutFile | None = None,
    ) -> None:
        """The platform may have the part: never resend it blindly; reconcile or surface."""
        part = f"part {chunk.parts_sent + 1}/{parts}: " if parts > 1 else ""
        await self.ledger.mark_unknown(
            item.id, f"outcome unknown, not resent: {part}{error}", error=error
        )
        ask = self._ask(channel, chunk, upload)
        if ask is not None and await self._reconcile(ask, chunk, parts) is not None:
            return
        log.warning(
            "message %s: reply %s to %s:%s may or may not have arrived (%s%s); not resent."
            " Check the chat, then `agentbridge outbox retry %s` (resend) or"
            " `agentbridge outbox sent %s` (it arrived)",
            item.message_id,
            item.id,
            item.channel,
            item.conversation,
            part,
            error,
            item.id,
            item.id,
        )

    def _can_ask(self, channel: Channel, item: OutboxItem) -> bool:
        """Can ``channel`` look ``item`` up (an upload needs ``reconcile_file``)?"""
        wanted = FileReconcilingChannel if self.as_file(item, channel) else ReconcilingChannel
        return isinstance(channel, wanted)

    def _ask(
        self, channel: Channel, chunk: OutboxItem, upload: OutFile | None = None
    ) -> Awaitable[Reconciled] | None:
        """The channel's lookup of ``chunk`` (its upload, if it goes as a file), if any."""
        if upload is not None or self.as_file(chunk, channel):
            if isinstance(channel, FileReconcilingChannel):
                return channel.reconcile_file(chunk, upload or described(chunk))
            return None
        return channel.reconcile(chunk) if isinstance(channel, ReconcilingChannel) else None

    async def _reconcile(
        self, ask: Awaitable[Reconciled], chunk: OutboxItem, parts: int
    ) -> bool | None:
        """Ask the channel whether the part in doubt landed; act on a definite answer.

        Returns True (landed), False (provably not: resent from that part) or None (cannot
        tell: the row stays ``unknown``; asked again later only if the lookup itself failed).
        """
        try:
            found = await asyncio.wait_for(ask, RECONCILE_TIMEOUT)
        except Exception as exc:
            log.info("reply %s: reconcile failed, will ask again: %s", chunk.id, exc)
            self._in_doubt.add(chunk.id)
            return None
        self._in_doubt.discard(chunk.id)
        if found.landed is None:
            return None
        index = chunk.parts_sent
        if found.landed and index + 1 >= parts:
            first = chunk.platform_message_id or found.platform_message_id
            sent = await self.ledger.mark_landed(chunk.id, first, actor="reconcile")
            log.info("reply %s: reconciled, it arrived", chunk.id)
            if self.on_sent:
                self.on_sent(sent)
            return True
        resume_at = index + 1 if found.landed else index
        first = found.platform_message_id if found.landed and index == 0 else None
        await self.ledger.resume_reply(chunk.id, resume_at, first)
        log.info(
            "reply %s: reconciled, part %d %s; sending from part %d",
            chunk.id,
            index + 1,
            "arrived" if found.landed else "never arrived",
            resume_at + 1,
        )
        return found.landed

    async def reconcile_in_doubt(self) -> None:
        """Ask again about unknown rows whose reconcile could not reach the platform."""
        for outbox_id in sorted(self._in_doubt):
            self._in_doubt.discard(outbox_id)
            try:
                item = await self.ledger.get_reply(outbox_id)
            except NotFound:
                continue
            channel = self.channels.get(item.channel)
            if item.state != "unknown" or channel is None:
                continue  # decided meanwhile (a human, another path)
            if self.as_file(item, channel):  # one upload: the whole row is the part
                parts, chunk = [item.text], item
            else:
                parts = chunk_text(item.text, channel.limits.max_message_length)
                index = min(item.parts_sent, len(parts) - 1)
                chunk = replace(item, text=parts[index], parts_sent=index)
            ask = self._ask(channel, chunk)
            if ask is not None:
                await self._reconcile(ask, chunk, parts=len(parts))
