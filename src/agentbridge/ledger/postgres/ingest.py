"""Ingest into the PostgreSQL ledger: one statement per message, one commit per batch.

Concurrent ingests of a store share a transaction (``group.GroupCommit``: their inserts
pipelined, one notification, one WAL flush); a lone ingest is a single statement, a
data-modifying ``WITH`` that inserts, audits and announces the row in autocommit mode, so its
ack costs one round trip and the flush. The row is skipped (``ON CONFLICT DO NOTHING``, a
tombstone check in the same statement) when its key was seen: only then do the lookups run,
and a conflict is recorded in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agentbridge.ledger.base import (
    IdempotencyConflict,
    IngestResult,
    NewMessage,
    _Conflict,
    _encode_meta,
    text_hash,
)
from agentbridge.ledger.postgres.group import GroupCommit
from agentbridge.ledger.postgres.sql import (
    CHANNEL,
    Cursor,
    insert_event,
    message,
    notify,
)
from agentbridge.ledger.records import queued_message
from agentbridge.ledger.replay import Tombstone
from agentbridge.ledger.rows import IngestRow, ingest_row, storable_row

T = TypeVar("T")

_INSERT = (
    "WITH row AS (INSERT INTO messages (channel, conversation, sender, platform_id, text,"
    " text_hash, agent, priority, state, meta, created_at, updated_at)"
    " SELECT %(channel)s, %(conversation)s, %(sender)s, %(key)s, %(text)s, %(hash)s,"
    " %(agent)s, %(priority)s, 'queued', %(meta)s, %(now)s, %(now)s"
    " WHERE NOT EXISTS (SELECT 1 FROM idempotency_tombstones"
    "   WHERE channel = %(channel)s AND idem_key = %(key)s)"
    " ON CONFLICT (channel, platform_id) DO NOTHING RETURNING id),"
    " audit AS (INSERT INTO events (message_id, at, actor, kind, to_state, attempt, detail)"
    "   SELECT id, %(now)s, %(channel)s, 'transition', 'queued', 1, %(detail)s FROM row)"
    f" SELECT id, pg_notify('{CHANNEL}', %(token)s || '|message|' || id) FROM row"
)
#: the same without the announcement (a batch announces its rows once, at its end)
_INSERT_QUIET = _INSERT.rsplit(" SELECT id, pg_notify", 1)[0] + " SELECT id FROM row"
#: many rows in one statement: ids are drawn first (one per input row, in order), so each
#: caller's row is found by its id; a left-out row (its key seen) has no match in ``row``
_INSERT_MANY = (
    "WITH input AS MATERIALIZED (SELECT t.*, nextval(pg_get_serial_sequence('messages', 'id'))"
    "   AS new_id FROM unnest(%(channel)s::text[], %(conversation)s::text[], %(sender)s::text[],"
    "   %(key)s::text[], %(text)s::text[], %(hash)s::text[], %(agent)s::text[],"
    "   %(priority)s::int[], %(meta)s::text[]) WITH ORDINALITY"
    "   AS t(channel, conversation, sender, key, text, hash, agent, priority, meta, ord)),"
    " row AS (INSERT INTO messages (id, channel, conversation, sender, platform_id, text,"
    "   text_hash, agent, priority, state, meta, created_at, updated_at)"
    "   SELECT new_id, channel, conversation, sender, key, text, hash, agent, priority,"
    "   'queued', meta, %(now)s, %(now)s FROM input i WHERE NOT EXISTS (SELECT 1 FROM"
    "   idempotency_tombstones g WHERE g.channel = i.channel AND g.idem_key = i.key)"
    "   ORDER BY ord ON CONFLICT (channel, platform_id) DO NOTHING"
    "   RETURNING id, channel, sender),"
    " audit AS (INSERT INTO events (message_id, at, actor, kind, to_state, attempt, detail)"
    "   SELECT id, %(now)s, channel, 'transition', 'queued', 1, 'ingested from ' || sender"
    "   FROM row ORDER BY id),"
    f" announce AS (SELECT pg_notify('{CHANNEL}', %(token)s || '|message|' || ids)"
    "   FROM (SELECT string_agg(id::text, ',') AS ids FROM row) AS s WHERE ids IS NOT NULL)"
    " SELECT i.ord, r.id FROM input i LEFT JOIN row r ON r.id = i.new_id"
    " CROSS JOIN (SELECT count(*) FROM announce) AS a ORDER BY i.ord"
)
#: the most rows in one shared statement (its one notification stays under 8000 bytes)
MAX_BATCH = 256


def _many_params(rows: Sequence[IngestRow], now: float, token: str) -> dict[str, Any]:
    cols = list(zip(*rows, strict=True))
    return {
        "channel": list(cols[0]),
        "conversation": list(cols[1]),
        "sender": list(cols[2]),
        "key": list(cols[3]),
        "text": list(cols[4]),
        "hash": [text_hash(t) for t in cols[4]],
        "agent": list(cols[5]),
        "priority": list(cols[6]),
        "meta": list(cols[7]),
        "now": now,
        "token": token,
    }


def _params(row: IngestRow, now: float, token: str) -> dict[str, Any]:
    channel, conversation, sender, key, text, agent, priority, meta_json = row
    return {
        "channel": channel,
        "conversation": conversation,
        "sender": sender,
        "key": key,
        "text": text,
        "hash": text_hash(text),
        "agent": agent,
        "priority": priority,
        "meta": meta_json,
        "now": now,
        "detail": "ingested from " + sender,
        "token": token,
    }


class IngestMixin:
    """Ingest methods of ``PostgresLedger``."""

    if TYPE_CHECKING:
        clock: Callable[[], float]
        token: str
        _group: GroupCommit

        async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        async def _auto(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T: ...
        def _notify(self, kind: str, ids: Iterable[int]) -> None: ...

    async def ingest(
        self,
        channel: str,
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        agent: str = "default",
        priority: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Durably store one inbound message; idempotent on ``(channel, key)``, also after
        retention pruned it; ``IdempotencyConflict`` (recorded) for other text. Concurrent
        callers share a transaction (``group.GroupCommit``); each returns after its COMMIT."""
        row = storable_row(
            channel, conversation, sender, key, text, agent, priority, _encode_meta(meta)
        )
        return await self._group.ingest(row)

    async def _commit_one(self, row: IngestRow) -> IngestResult:
        """One row in one statement (autocommit): the lone producer's path."""

        async def run(cur: Cursor, now: float) -> IngestResult | _Conflict:
            return await _ingest_one(cur, now, row, self.token, announce=True)

        result = await self._auto(run)
        if isinstance(result, _Conflict):
            await self._record_conflict(result)
            raise IdempotencyConflict(str(result))
        if result.created:
            self._notify("message", [result.message.id])
        return result

    async def _commit_many(self, rows: Sequence[IngestRow]) -> list[IngestResult | BaseException]:
        """Several rows in one statement (autocommit: one round trip, one WAL flush, one
        notification). A row whose key was seen is left out by the insert and answered
        afterwards by the lone path's lookups."""
        now = self.clock()
        params = _many_params(rows, now, self.token)

        async def run(cur: Cursor, now: float) -> list[int | None]:
            await cur.execute(_INSERT_MANY, params)
            return [None if r["id"] is None else int(r["id"]) for r in await cur.fetchall()]

        inserted = await self._auto(run)
        outcomes: list[IngestResult | BaseException] = []
        created: list[int] = []
        for row, ident in zip(rows, inserted, strict=True):
            if ident is None:  # a duplicate, a conflict, or a key seen earlier in this batch
                try:
                    outcomes.append(await self._commit_one(row))
                except IdempotencyConflict as exc:
                    outcomes.append(exc)
            else:
                outcomes.append(IngestResult(queued_message(ident, now, row), created=True))
                created.append(ident)
        self._notify("message", created)
        return outcomes

    async def ingest_many(self, items: Sequence[NewMessage]) -> list[IngestResult]:
        """Ingest a batch in one transaction; a conflict rolls all of it back and raises (the
        conflict itself is still recorded, in a transaction of its own)."""
        rows = [ingest_row(item) for item in items]

        async def run(cur: Cursor, now: float) -> list[IngestResult]:
            out: list[IngestResult] = []
            for row in rows:
                result = await _ingest_one(cur, now, row, self.token, announce=False)
                if isinstance(result, _Conflict):
                    raise result
                out.append(result)
            await notify(cur, self.token, "message", [r.message.id for r in out if r.created])
            return out

        try:
            results = await self._tx(run)
        except _Conflict as conflict:
            await self._record_conflict(conflict)
            raise IdempotencyConflict(str(conflict)) from None
        self._notify("message", [r.message.id for r in results if r.created])
        return results

    async def _record_conflict(self, conflict: _Conflict) -> None:
        async def run(cur: Cursor, now: float) -> None:
            await insert_event(
                cur,
                now,
                conflict.item.channel,
                "idempotency_conflict",
                message_id=None if conflict.pruned else conflict.message_id,
                detail=f"key {conflict.item.key!r} re-sent with different text"
                + (f" (message {conflict.message_id}, pruned)" if conflict.pruned else ""),
            )

        await self._tx(run)


async def _ingest_one(
    cur: Cursor, now: float, row: IngestRow, token: str, *, announce: bool
) -> IngestResult | _Conflict:
    """Insert one row, or find what its key already names (a duplicate, or a conflict)."""
    params = _params(row, now, token)
    await cur.execute(_INSERT if announce else _INSERT_QUIET, params)
    inserted = await cur.fetchone()
    if inserted is not None:
        return IngestResult(queued_message(int(inserted["id"]), now, row), created=True)
    channel, conversation, sender, key, text, agent, priority, _ = row
    item = NewMessage(channel, conversation, sender, text, key, agent, priority, None)
    await cur.execute(
        "SELECT message_id, text_hash, final_state, pruned_at FROM idempotency_tombstones"
        " WHERE channel = %s AND idem_key = %s",
        (channel, key),
    )
    grave = await cur.fetchone()
    if grave is not None:
        tomb = Tombstone(
            grave["message_id"], grave["text_hash"], grave["final_state"], grave["pruned_at"]
        )
        if tomb.text_hash == params["hash"]:
            return IngestResult(tomb.as_message(item), created=False)
        return _Conflict(item, tomb.message_id, pruned=True)
    await cur.execute(
        "SELECT * FROM messages WHERE channel = %s AND platform_id = %s", (channel, key)
    )
    found = await cur.fetchone()
    if found is None:  # pruned between the insert and the lookup: ask again
        return await _ingest_one(cur, now, row, token, announce=announce)
    if found["text_hash"] == params["hash"]:
        return IngestResult(message(found), created=False)
    return _Conflict(item, int(found["id"]))
