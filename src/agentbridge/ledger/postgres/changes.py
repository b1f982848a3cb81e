"""Changes committed by other stores of the same database, heard through LISTEN/NOTIFY.

Each write transaction queues ``pg_notify`` (see ``sql.notify``); PostgreSQL delivers it at
COMMIT to every listening session. One dedicated connection per store listens and calls the
store's listeners, so a dispatcher or relay on another machine wakes within a round trip of
the commit instead of polling. Its own store's payloads are skipped (those listeners were
called at commit already).

A notification sent while the listening connection is down is not queued for it. So the feed
remembers the newest audit-event id it knew of (checked on every slow safety poll, which also
proves the connection alive), and after reconnecting it re-scans the audit trail from there:
every change writes an event, so every message and reply changed during the gap is announced.
The re-scan starts ``OVERLAP`` ids early, because an id taken by a transaction that was still
open at the check commits after it; a repeated announcement is only a spare wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from psycopg import AsyncConnection, Notify, OperationalError
from psycopg.rows import DictRow, dict_row

from agentbridge.kinds import ChangeKind
from agentbridge.ledger.postgres.sql import CHANNEL
from agentbridge.ledger.postgres.url import scrub, where

log = logging.getLogger("agentbridge.ledger.postgres")

#: seconds between two safety polls of the listening connection
POLL_SECONDS = 5.0
#: event ids re-scanned before the last known one after a reconnect
OVERLAP = 1000
#: the longest wait between two reconnect attempts (seconds)
MAX_BACKOFF = 2.0
#: the most events announced by one re-scan (a longer gap wakes everyone anyway)
RESCAN_LIMIT = 20_000

Deliver = Callable[[ChangeKind, list[int]], None]
_KINDS = {"message": ChangeKind.MESSAGE, "outbox": ChangeKind.OUTBOX}


class ChangeFeed:
    """The listening connection of one store: notifications in, listeners called."""

    def __init__(
        self, url: str, token: str, deliver: Deliver, *, poll_seconds: float = POLL_SECONDS
    ) -> None:
        self._url = url
        self._token = token
        self._deliver = deliver
        self.poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[DictRow] | None = None
        #: set while LISTEN is in force (tests and benchmarks wait for it)
        self.listening = asyncio.Event()
        self.reconnects = 0  #: connections lost and made again
        self.rescanned = 0  #: changes announced by re-scans after a gap
        self.backend_pid: int | None = None  #: the listening session's server process

    def start(self) -> None:
        """Start listening in a task of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-feed")

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        cursor: int | None = None  # the newest event id known before a gap
        backoff = 0.05
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self._url, autocommit=True, row_factory=dict_row, connect_timeout=10
                )
            except OperationalError as exc:
                log.warning(
                    "ledger %s: listening connection failed (%s); retrying",
                    where(self._url),
                    scrub(" ".join(str(exc).split()), self._url),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            self._conn = conn
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                self.backend_pid = conn.info.backend_pid
                self.listening.set()  # from here on no commit goes unheard
                if cursor is not None:
                    await self._rescan(conn, cursor)
                cursor = await _high_water(conn)
                backoff = 0.05
                while True:
                    async for note in conn.notifies(timeout=self.poll_seconds):
                        self._heard(note)
                    cursor = await _high_water(conn)  # the safety poll
            except OperationalError as exc:
                self.listening.clear()
                self.reconnects += 1
                log.warning(
                    "ledger %s: listening connection lost (%s); reconnecting",
                    where(self._url),
                    scrub(" ".join(str(exc).split()), self._url),
                )
            finally:
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.close()

    def _heard(self, note: Notify) -> None:
        token, _, rest = note.payload.partition("|")
        if token == self._token:
            return  # this store's own change: its listeners were called at commit
        kind, _, ids = rest.partition("|")
        change = _KINDS.get(kind)
        if change is None or not ids:
            return
        try:
            self._deliver(change, [int(i) for i in ids.split(",")])
        except ValueError:
            log.warning("ledger: ignored a malformed change notification")

    async def _rescan(self, conn: AsyncConnection[DictRow], cursor: int) -> None:
        """Announce every message and reply the audit trail shows changed since ``cursor``."""
        cur = await conn.execute(
            "SELECT message_id, outbox_id FROM events WHERE id > %s ORDER BY id LIMIT %s",
            (max(cursor - OVERLAP, 0), RESCAN_LIMIT),
        )
        messages: dict[int, None] = {}
        replies: dict[int, None] = {}
        for row in await cur.fetchall():
            if row["message_id"] is not None:
                messages[row["message_id"]] = None
            if row["outbox_id"] is not None:
                replies[row["outbox_id"]] = None
        self.rescanned += len(messages) + len(replies)
        if messages:
            self._deliver(ChangeKind.MESSAGE, list(messages))
        if replies:
            self._deliver(ChangeKind.OUTBOX, list(replies))


async def _high_water(conn: AsyncConnection[DictRow]) -> int:
    cur = await conn.execute("SELECT COALESCE(MAX(id), 0) AS top FROM events")
    row = await cur.fetchone()
    return int(row["top"]) if row else 0
