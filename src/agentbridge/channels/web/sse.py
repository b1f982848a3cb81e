"""Server-Sent Events over the ledger's audit trail: live, resumable, never lossy.

Each SSE event id is a ledger event id. A browser that loses the connection reconnects by
itself with ``Last-Event-ID``; the stream then reads ``ledger.events_since(last_id)`` and so
replays exactly the events it missed, in order, once. Events a stream filters out (another
conversation) are still sent as a bare ``id:`` line: the browser's cursor moves on without a
payload, so a reconnect does not re-read them.

Streams sleep until ``ledger.on_change`` wakes them (ingest, claim, transitions…). Writers that
do not notify (another process such as ``agentbridge send``, outbox ``mark_sent``) are caught by
a one-second safety poll; the channel also wakes streams right after a web reply is marked sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentbridge.channels.web.views import event_view, message_view
from agentbridge.models import Event

if TYPE_CHECKING:
    from agentbridge.kinds import ChangeKind
    from agentbridge.ledger.store import ChannelLedger

log = logging.getLogger(__name__)

SAFETY_POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 1000
BATCH = 500


class Notifier:
    """Wakes every open stream on a ledger change, and knows the newest event id (head)."""

    def __init__(self, ledger: ChannelLedger) -> None:
        self.ledger = ledger
        self.head = 0
        self._waiters: set[asyncio.Event] = set()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        """Find the head once (a galloping search, O(log n) reads), then follow on_change."""
        self.head = await _find_head(self.ledger)
        self._unsubscribe = self.ledger.on_change(self._on_change)

    def close(self) -> None:
        """Stop listening to the ledger; wake streams so they notice shutdown promptly."""
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
            self._unsubscribe = None
        self.wake()

    def _on_change(self, kind: ChangeKind, ident: int) -> None:
        self.wake()

    def wake(self) -> None:
        """Wake every waiting stream (cheap; called on the event loop)."""
        for waiter in self._waiters:
            waiter.set()

    def subscribe(self) -> asyncio.Event:
        """A per-stream wake flag; release it with ``unsubscribe``."""
        flag = asyncio.Event()
        self._waiters.add(flag)
        return flag

    def unsubscribe(self, flag: asyncio.Event) -> None:
        """Forget a stream's wake flag."""
        self._waiters.discard(flag)

    async def current_head(self) -> int:
        """The newest event id right now (reads forward from the cached head)."""
        while True:
            events = await self.ledger.events_since(self.head, limit=BATCH)
            if not events:
                return self.head
            self.head = max(self.head, events[-1].id)


async def _find_head(ledger: ChannelLedger) -> int:
    """The largest event id, using only ``events_since(x, limit=1)`` (is there an id > x?)."""

    async def beyond(x: int) -> bool:
        return bool(await ledger.events_since(x, limit=1))

    if not await beyond(0):
        return 0
    low, high = 0, 1024  # invariant: an id > low exists
    while await beyond(high):
        low, high = high, high * 2
    while high - low > 1:  # invariant: id > low exists, none > high
        mid = (low + high) // 2
        if await beyond(mid):
            low = mid
        else:
            high = mid
    return high


def parse_cursor(request: web.Request) -> tuple[str, int | None]:
    """Where to resume: ``Last-Event-ID`` (a browser's reconnect) wins over ``?after=``.

    Returns ``(source, cursor)``, source ``"last-event-id"``, ``"after"`` or ``"head"`` (None:
    start from the newest event).
    """
    for source, raw in (
        ("last-event-id", request.headers.get("Last-Event-ID")),
        ("after", request.query.get("after")),
    ):
        if raw is not None and raw.strip().isdigit():
            return source, int(raw.strip())
    return "head", None


class StreamFilter:
    """Which messages a stream carries: all (dashboard) or one agent/conversation (chat)."""

    def __init__(self, channel: str, query: Any) -> None:
        self.channel = channel
        self.agent: str | None = query.get("agent") or None
        self.conversation: str | None = query.get("conversation") or None

    @property
    def everything(self) -> bool:
        """No filter: the dashboard's activity feed."""
        return self.agent is None and self.conversation is None

    def wants(self, view: dict[str, Any]) -> bool:
        """Does this message belong to the stream?"""
        if self.agent is not None and view["agent"] != self.agent:
            return False
        return self.conversation is None or (
            view["conversation"] == self.conversation and view["channel"] == self.channel
        )


class EventStreams:
    """The ``GET /api/events`` handler and the set of open streams."""

    def __init__(self, ledger: ChannelLedger, notifier: Notifier, channel: str) -> None:
        self.ledger = ledger
        self.notifier = notifier
        self.channel = channel
        self._open: set[asyncio.Event] = set()
        #: frames without an id (ephemeral receipts) waiting to be written, per stream
        self._extra: dict[asyncio.Event, list[bytes]] = {}
        self._filters: dict[asyncio.Event, StreamFilter] = {}
        self._dropping: set[asyncio.Event] = set()
        #: ``(source, cursor)`` of every connection, oldest first (tests and debugging)
        self.connections: list[tuple[str, int | None]] = []

    @property
    def open_count(self) -> int:
        """How many streams are connected now."""
        return len(self._open)

    def drop_all(self) -> None:
        """End every open stream (the browser reconnects with Last-Event-ID by itself)."""
        self._dropping |= self._open
        for flag in self._open:
            flag.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Stream ledger events after the cursor, then live ones, until the client leaves."""
        source, cursor = parse_cursor(request)
        self.connections.append((source, cursor))
        if cursor is None:
            cursor = await self.notifier.current_head()
        wanted = StreamFilter(self.channel, request.query)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        flag = self.notifier.subscribe()
        self._open.add(flag)
        self._extra[flag] = []
        self._filters[flag] = wanted
        last_write = time.monotonic()
        try:
            while flag not in self._dropping:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                flag.clear()  # before reading: a change during the read wakes the next wait
                extra, self._extra[flag] = self._extra[flag], []
                if extra:
                    await response.write(b"".join(extra))
                events = await self.ledger.events_since(cursor, limit=BATCH)
                if events:
                    await response.write(await self._render(events, wanted))
                    cursor = events[-1].id
                    last_write = time.monotonic()
                    continue
                if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flag.wait(), SAFETY_POLL_SECONDS)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away; it resumes from its Last-Event-ID
        finally:
            self._open.discard(flag)
            self._dropping.discard(flag)
            self._extra.pop(flag, None)
            self._filters.pop(flag, None)
            self.notifier.unsubscribe(flag)
        return response

    async def _render(self, events: list[Event], wanted: StreamFilter) -> bytes:
        """SSE frames for a batch: one ledger read per distinct message, not per event."""
        views: dict[int, dict[str, Any] | None] = {}
        for event in events:
            mid = event.message_id
            if mid is not None and mid not in views:
                views[mid] = await self._message(mid)
        out: list[str] = []
        for event in events:
            view = views.get(event.message_id) if event.message_id is not None else None
            if view is None and not wanted.everything:
                out.append(f"id: {event.id}\n\n")  # cursor moves on, nothing to show
                continue
            if view is not None and not wanted.wants(view):
                out.append(f"id: {event.id}\n\n")
                continue
            payload = json.dumps({"event": event_view(event), "message": view})
            out.append(f"id: {event.id}\nevent: ledger\ndata: {payload}\n\n")
        return "".join(out).encode()

    async def _message(self, message_id: int) -> dict[str, Any] | None:
        from agentbridge.ledger.store import NotFound

        try:
            message = await self.ledger.get(message_id)
        except NotFound:
            return None  # pruned meanwhile
        replies = await self.ledger.list_replies(message_id=message_id)
        return message_view(message, replies)

    def push_receipt(self, payload: dict[str, Any]) -> None:
        """Send a receipt the ledger cannot show (``waiting``: rate limit, permission…).

        Written without an ``id:`` line, so it never moves a browser's cursor: it is a live
        hint only, and a reconnect does not owe it (the ledger events stay authoritative).
        """
        frame = f"event: receipt\ndata: {json.dumps(payload)}\n\n".encode()
        for flag, wanted in self._filters.items():
            conversation = wanted.conversation
            if conversation is None or (
                conversation == payload.get("conversation")
                and payload.get("channel") == self.channel
            ):
                self._extra[flag].append(frame)
                flag.set()
