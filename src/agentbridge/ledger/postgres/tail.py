"""``events_since`` on PostgreSQL: a tail of the audit trail that never skips a late commit.

Why: event ids come from a sequence when a row is inserted, but rows become visible when
their transaction commits, and transactions commit in any order. A reader that saw id 8
while the transaction holding id 7 was still open moves its cursor past 7 and never sees it
(the web console's live stream, a ``Last-Event-ID`` resume). So a read returns only ids up
to the sequence's value taken *before* it, and only once every transaction that could hold
one of those ids has ended: a transaction that drew an id by then had its transaction id
too, so it is finished or listed as in progress in any snapshot taken after that point. The
common case (no writer in progress) costs two statements; otherwise the reader waits for
the listed writers (milliseconds: ledger transactions are short). A writer that stays open
past ``WAIT_SECONDS`` (a stuck session) only holds the tail back to the ids before the
first one still missing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from agentbridge.ledger.postgres.sql import Cursor
from agentbridge.ledger.records import event_from_row
from agentbridge.models import Event

#: the longest a read waits for writers still in progress before settling for less (s)
WAIT_SECONDS = 2.0
_TOP = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS top FROM events_id_seq"
_READ = (
    "SELECT e.*, ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())::text) AS busy"
    " FROM events AS e WHERE e.id > %s AND e.id <= %s ORDER BY e.id LIMIT %s"
)
_PLAIN = "SELECT * FROM events WHERE id > %s AND id <= %s ORDER BY id LIMIT %s"
_BUSY = "SELECT ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())::text) AS busy"
_RUNNING = (
    "SELECT ARRAY(SELECT x::text FROM unnest(%s::xid8[]) AS x"
    " WHERE pg_xact_status(x) = 'in progress') AS busy"
)


class TailStats:
    """How often reads had to wait for writers (tests see that the wait happened)."""

    def __init__(self) -> None:
        self.waits = 0
        self.cut_short = 0


async def events_since(
    cur: Cursor, after_id: int, limit: int, stats: TailStats | None = None
) -> list[Event]:
    """Audit rows with id > ``after_id``, oldest first, none of them ahead of a gap that a
    transaction still in progress could fill."""
    await cur.execute(_TOP)
    got = await cur.fetchone()
    top = int(got["top"]) if got else 0
    if top <= after_id:
        return []
    await cur.execute(_READ, (after_id, top, limit))
    rows = await cur.fetchall()
    busy = list(rows[0]["busy"]) if rows else await _busy(cur)
    if not busy:
        return [_event(r) for r in rows]
    if stats is not None:
        stats.waits += 1
    deadline = time.monotonic() + WAIT_SECONDS
    while busy and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
        await cur.execute(_RUNNING, (busy,))
        row = await cur.fetchone()
        busy = list(row["busy"]) if row else []
    await cur.execute(_PLAIN, (after_id, top, limit))
    events = [_event(r) for r in await cur.fetchall()]
    if not busy:
        return events
    if stats is not None:
        stats.cut_short += 1
    return _gap_free(events, after_id)


async def _busy(cur: Cursor) -> list[str]:
    await cur.execute(_BUSY)
    row = await cur.fetchone()
    return list(row["busy"]) if row else []


def _gap_free(events: list[Event], after_id: int) -> list[Event]:
    """The events before the first missing id (an id still held open, or rolled back)."""
    out: list[Event] = []
    expected = after_id + 1
    for event in events:
        if event.id != expected:
            break
        out.append(event)
        expected += 1
    return out


def _event(row: Any) -> Event:
    return event_from_row(cast(Any, {k: v for k, v in row.items() if k != "busy"}))
