"""The outbox relay: sends write-ahead replies through their channels, never blindly twice.

Event-driven (woken by the ledger when a reply is queued), it reserves each attempt in the
ledger before calling the platform, chunks to the channel's declared limit, honours
``retry_after``, classifies errors (hook → channel → built-in rules), backs off 5 s / 25 s /
2 min / 10 min with jitter, stops at the retry cap, and expires rows past their TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import pluggy

from agentbridge.config import OutboxConfig
from agentbridge.crashpoints import crash_point
from agentbridge.ledger import Ledger
from agentbridge.ledger_outbox import backoff_delay
from agentbridge.models import OutboxItem
from agentbridge.protocols import Channel, DeliveryError, ErrorClass

log = logging.getLogger(__name__)

#: errors that will not get better by retrying (conservative: anything else is transient)
PERMANENT_PATTERNS = re.compile(
    r"chat not found|user not found|bot was blocked|bot was kicked|forbidden|chat_id is empty|"
    r"no conversation reference|ambiguous.*recipient|user is deactivated|unknown channel",
    re.IGNORECASE,
)


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


def classify(
    error: BaseException, channel: Channel | None, pm: pluggy.PluginManager | None
) -> tuple[ErrorClass, float | None]:
    """(class, retry_after): the plugin hook first, then the channel, then the built-in rules."""
    retry_after = error.retry_after if isinstance(error, DeliveryError) else None
    if pm is not None and channel is not None:
        answer = pm.hook.classify_delivery_error(channel=channel.name, error=error)
        if answer is not None:
            return ErrorClass(answer), retry_after
    if isinstance(error, DeliveryError) and error.error_class == ErrorClass.PERMANENT:
        return ErrorClass.PERMANENT, retry_after
    if channel is not None and not isinstance(error, DeliveryError):
        try:
            answer = channel.classify_error(error)
        except Exception:
            answer = None
        if answer is not None:
            return ErrorClass(answer), retry_after
    if PERMANENT_PATTERNS.search(str(error)):
        return ErrorClass.PERMANENT, retry_after
    return ErrorClass.TRANSIENT, retry_after


class OutboxRelay:
    """Delivers due outbox rows; one instance per supervisor."""

    def __init__(
        self,
        ledger: Ledger,
        channels: Mapping[str, Channel],
        config: OutboxConfig,
        pm: pluggy.PluginManager | None = None,
        on_sent: Callable[[OutboxItem], None] | None = None,
        on_failed: Callable[[OutboxItem, str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.channels = channels
        self.config = config
        self.pm = pm
        self.on_sent = on_sent
        self.on_failed = on_failed
        self.wake = asyncio.Event()

    def poke(self) -> None:
        """Something may be due now."""
        self.wake.set()

    async def startup(self) -> int:
        """Rows a dead bridge left ``sending`` become ``unknown`` (never resent blindly)."""
        unknown = await self.ledger.recover_sending()
        for item in unknown:
            log.warning(
                "reply %s (message %s) state unknown after a crash while sending;"
                " not resent: check the platform, then `agentbridge outbox retry %s`",
                item.id,
                item.message_id,
                item.id,
            )
        return len(unknown)

    async def run(self) -> None:
        """Deliver forever: drain what is due, then sleep until woken or the next due time."""
        await self.startup()
        drain_deadline = time.monotonic() + self.config.drain_budget_seconds
        last_expire = 0.0
        while True:
            if time.monotonic() - last_expire > 60:
                last_expire = time.monotonic()
                expired = await self.ledger.expire_replies()
                if expired:
                    log.warning("%d replies expired before they could be sent", expired)
            self.wake.clear()
            item = await self.ledger.claim_due_reply()
            if item is not None:
                await self.deliver(item)
                if time.monotonic() > drain_deadline:
                    await asyncio.sleep(0)  # after the startup budget: stay fair to the loop
                continue
            due = await self.ledger.next_reply_due_at()
            timeout = 30.0 if due is None else max(0.01, min(30.0, due - self.ledger.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=timeout)

    async def deliver(self, item: OutboxItem) -> None:
        """One reserved attempt (``sending`` already committed): call the platform, record."""
        channel = self.channels.get(item.channel)
        if channel is None:
            await self.ledger.mark_failed(item.id, f"no channel {item.channel!r} is configured")
            if self.on_failed:
                self.on_failed(item, "channel not configured")
            return
        crash_point("during_send")
        parts = chunk_text(item.text, channel.limits.max_message_length)
        platform_ids: list[str | None] = [item.platform_message_id]
        try:
            for index in range(item.parts_sent, len(parts)):
                # parts_sent tells the channel which part this is (0 = the reply's first)
                chunk = replace(item, text=parts[index], parts_sent=index)
                platform_id = await channel.deliver(chunk)
                platform_ids.append(platform_id)
                if len(parts) > 1:  # record progress: a retry must not resend earlier parts
                    await self.ledger.mark_part_sent(item.id, index + 1, platform_id)
        except Exception as exc:
            await self._failed_attempt(item, channel, exc)
            return
        first = next((pid for pid in platform_ids if pid), None)
        sent = await self.ledger.mark_sent(item.id, first)
        log.info(
            "message %s: reply %s sent via %s (%s part(s))",
            item.message_id,
            item.id,
            item.channel,
            len(parts),
        )
        if self.on_sent:
            self.on_sent(sent)

    async def _failed_attempt(self, item: OutboxItem, channel: Channel, exc: Exception) -> None:
        error_class, retry_after = classify(exc, channel, self.pm)
        error = f"{type(exc).__name__}: {exc}"[:500]
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
