"""How ingested messages become rows: one ``INSERT`` for a whole group commit.

Inside the caller's transaction, nothing here awaits. A group commit's rows go in with one
multi-row ``INSERT … RETURNING`` (and their audit events with one more statement): statements,
not rows, are what a commit's Python time is made of. A repeated key (a platform's redelivery,
a conflict) is rare, so such a batch undoes its insert and takes the row-at-a-time path, which
looks up tombstones and stored messages and reports each one exactly as before.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import cache
from hashlib import sha256
from operator import itemgetter

from agentbridge.ledger.base import (
    IngestResult,
    NewMessage,
    _Conflict,
    _encode_meta,
    _record_conflict,
)
from agentbridge.ledger.records import message_from_row, queued_message
from agentbridge.ledger.replay import find_tombstone
from agentbridge.models import Message
from agentbridge.sanitize import clean_text

#: one message to ingest, as stored: ``(channel, conversation, sender, key, text, agent,
#: priority, meta_json)`` (a tuple: a lone ingest builds no ``NewMessage``)
IngestRow = tuple[str, str, str, "str | None", str, str, int, "str | None"]

_COLUMNS = (
    "channel, conversation, sender, platform_id, text, text_hash, agent, priority, state, meta,"
    " created_at, updated_at"
)
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_COLUMNS}) SELECT ?,?,?,?,?,?,?,?,'queued',?,?,?"
    " WHERE NOT EXISTS (SELECT 1 FROM idempotency_tombstones WHERE channel = ? AND idem_key = ?)"
    " ON CONFLICT (channel, platform_id) DO NOTHING"
)
_INSERT_INGEST_EVENT = (
    "INSERT INTO events (message_id, at, actor, kind, to_state, attempt, detail)"
    " VALUES (?, ?, ?, 'transition', 'queued', 1, ?)"
)
#: rows per multi-row statement (10 parameters each, far under SQLite's limit)
MULTI_MAX = 32
#: what a multi-row insert returns of each row, to check it against what was sent
_CHECKED = "channel, conversation, sender, platform_id, text_hash, agent, priority, meta"


def ingest_row(item: NewMessage) -> IngestRow:
    """``item`` as an ``IngestRow`` (its meta encoded, its text fields storable)."""
    return storable_row(
        item.channel,
        item.conversation,
        item.sender,
        item.key,
        item.text,
        item.agent,
        item.priority,
        _encode_meta(item.meta),
    )


def storable_row(
    channel: str,
    conversation: str,
    sender: str,
    key: str | None,
    text: str,
    agent: str,
    priority: int,
    meta_json: str | None,
) -> IngestRow:
    """The row with every text field valid Unicode (lone surrogates → U+FFFD).

    Applied on every ingest path so that no channel can forget it: SQLite cannot store a
    lone surrogate, and the ``UnicodeEncodeError`` would otherwise reach the sender as a
    crash (or a 5xx, forever). ASCII, the common case, is checked without a regex.
    """
    if not (
        text.isascii()
        and channel.isascii()
        and conversation.isascii()
        and sender.isascii()
        and agent.isascii()
        and (key is None or key.isascii())
    ):
        fields = (channel, conversation, sender, text, agent)
        channel, conversation, sender, text, agent = map(clean_text, fields)
        key = None if key is None else clean_text(key)
    return (channel, conversation, sender, key, text, agent, priority, meta_json)


def _digest(text: str) -> str:
    return sha256(text.encode("utf-8", "surrogatepass")).hexdigest()  # = text_hash


@cache
def _multi_insert(n: int) -> str:
    """One statement for ``n`` rows: ``?1`` is the time, each row 9 values after it."""
    values = ",".join("(" + ",".join(f"?{2 + 9 * i + j}" for j in range(9)) + ")" for i in range(n))
    return (
        f"INSERT INTO messages ({_COLUMNS}) SELECT column1, column2, column3, column4,"
        " column5, column6, column7, column8, 'queued', column9, ?1, ?1"
        f" FROM (VALUES {values}) AS v WHERE NOT EXISTS (SELECT 1 FROM idempotency_tombstones"
        " AS t WHERE t.channel = v.column1 AND t.idem_key = v.column4)"
        f" ON CONFLICT (channel, platform_id) DO NOTHING RETURNING id, {_CHECKED}"
    )


@cache
def _multi_events(n: int) -> str:
    values = ",".join(
        f"(?{2 + 3 * i},?1,?{3 + 3 * i},'transition','queued',1,?{4 + 3 * i})" for i in range(n)
    )
    return (
        "INSERT INTO events (message_id, at, actor, kind, to_state, attempt, detail)"
        f" VALUES {values}"
    )


def _insert_all(
    conn: sqlite3.Connection, now: float, rows: Sequence[IngestRow]
) -> list[int] | None:
    """Insert every row with one statement and return their ids in order; or None, with
    nothing inserted, when any row was not new (a stored or tombstoned key, or a key twice).

    ``RETURNING`` promises no order, so the returned rows are sorted by id and each one is
    checked against the row it is taken for; any mismatch also undoes the insert.
    """
    params: list[object] = [now]
    sent = []
    for channel, conversation, sender, key, text, agent, priority, meta_json in rows:
        digest = _digest(text)
        params += (channel, conversation, sender, key, text, digest, agent, priority, meta_json)
        sent.append((channel, conversation, sender, key, digest, agent, priority, meta_json))
    cursor = conn.execute(_multi_insert(len(rows)), params)
    returned = sorted(map(tuple, cursor.fetchall()), key=itemgetter(0))
    if len(returned) == len(rows) and all(
        got[1:] == want for got, want in zip(returned, sent, strict=True)
    ):
        return [got[0] for got in returned]
    if returned:  # never committed: the ids are as unused as before
        marks = ",".join("?" * len(returned))
        conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", [r[0] for r in returned])
    return None


def _ingest_rows(
    conn: sqlite3.Connection,
    now: float,
    rows: Sequence[IngestRow],
    *,
    record_conflicts: bool = True,
) -> list[IngestResult | _Conflict]:
    """Insert messages (inside the caller's transaction); conflicts are returned, not raised.

    A new row's ``Message`` is built from what was inserted (no row to read back and decode).
    """
    if len(rows) == 1:  # a lone ingest: no batch bookkeeping
        channel, conversation, sender, key, text, agent, priority, meta_json = row = rows[0]
        digest = _digest(text)
        values = (channel, conversation, sender, key, text, digest, agent, priority, meta_json)
        cursor = conn.execute(_INSERT_MESSAGE, (*values, now, now, channel, key))
        if cursor.rowcount != 1:
            return [_existing(conn, now, row, digest, record_conflicts)]
        mid = cursor.lastrowid
        assert mid is not None
        conn.execute(_INSERT_INGEST_EVENT, (mid, now, channel, "ingested from " + sender))
        return [_created(queued_message(mid, now, row))]
    out: list[IngestResult | _Conflict] = []
    events: list[object] = [now]
    for start in range(0, len(rows), MULTI_MAX):
        chunk = rows[start : start + MULTI_MAX]
        ids = _insert_all(conn, now, chunk) if len(chunk) > 1 else None
        if ids is not None:
            for mid, row in zip(ids, chunk, strict=True):
                events += (mid, row[0], "ingested from " + row[2])
                out.append(_created(queued_message(mid, now, row)))
            continue
        for row in chunk:
            out.append(_one(conn, now, row, events, record_conflicts))
    _insert_events(conn, events)
    return out


def _one(
    conn: sqlite3.Connection,
    now: float,
    row: IngestRow,
    events: list[object],
    record_conflicts: bool,
) -> IngestResult | _Conflict:
    """Insert one row (nothing if a tombstone holds its key, checked in the same statement):
    a new key costs one statement; the lookups run only for a repeated key."""
    channel, conversation, sender, key, text, agent, priority, meta_json = row
    digest = _digest(text)
    values = (channel, conversation, sender, key, text, digest, agent, priority, meta_json)
    cursor = conn.execute(_INSERT_MESSAGE, (*values, now, now, channel, key))
    if cursor.rowcount == 1:
        mid = cursor.lastrowid
        assert mid is not None
        events += (mid, channel, "ingested from " + sender)
        return _created(queued_message(mid, now, row))
    return _existing(conn, now, row, digest, record_conflicts)


def _insert_events(conn: sqlite3.Connection, events: list[object]) -> None:
    """The audit events of the new rows: ``events`` is the time, then 3 values per row."""
    n = (len(events) - 1) // 3
    for start in range(0, n, MULTI_MAX):
        count = min(MULTI_MAX, n - start)
        part = events[1 + 3 * start : 1 + 3 * (start + count)]
        if count == 1:
            conn.execute(_INSERT_INGEST_EVENT, (part[0], events[0], part[1], part[2]))
        else:
            conn.execute(_multi_events(count), [events[0], *part])


def _created(message: Message) -> IngestResult:
    """``IngestResult(message, created=True)`` without the frozen ``__init__``'s setattrs."""
    result = object.__new__(IngestResult)
    result.__dict__.update(message=message, created=True)
    return result


def _new_message_of(row: IngestRow) -> NewMessage:
    """The ``NewMessage`` of a row, for the rare paths that report on it (conflicts)."""
    channel, conversation, sender, key, text, agent, priority, meta_json = row
    meta = json.loads(meta_json) if meta_json else None
    return NewMessage(channel, conversation, sender, text, key, agent, priority, meta)


def _existing(
    conn: sqlite3.Connection, now: float, row: IngestRow, digest: str, record_conflicts: bool
) -> IngestResult | _Conflict:
    """A repeated key: the stored (or tombstoned) message if the text matches, else a
    conflict (recorded unless the caller rolls back and records it itself)."""
    item = _new_message_of(row)
    grave = find_tombstone(conn, item.channel, item.key)
    if grave is not None:  # retention pruned this key's message: still a duplicate
        if grave.text_hash == digest:
            return IngestResult(grave.as_message(item), created=False)
        conflict = _Conflict(item, grave.message_id, pruned=True)
    else:
        found = conn.execute(
            "SELECT * FROM messages WHERE channel = ? AND platform_id = ?", (item.channel, item.key)
        ).fetchone()
        if found["text_hash"] == digest:
            return IngestResult(message_from_row(found), created=False)
        conflict = _Conflict(item, found["id"])
    if record_conflicts:
        _record_conflict(conn, now, conflict)
    return conflict
