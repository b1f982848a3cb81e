"""Ingest into the PostgreSQL ledger: one statement, one round trip, one commit per message.

A new message is inserted, audited and announced by a single statement (a data-modifying
``WITH``) in autocommit mode, so the ingress ack costs one round trip and the server's WAL
flush; concurrent producers share flushes through PostgreSQL's own group commit. The row is
skipped (``ON CONFLICT DO NOTHING``, a tombstone check in the same statement) when its key was
seen: only then do the lookups run, and a conflict is recorded in a transaction of its own.
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
from agentbridge.ledger.postgres.sql import CHANNEL, Cursor, insert_event, message, notify
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
        retention pruned it; ``IdempotencyConflict`` (recorded) for other text."""
        row = storable_row(
            channel, conversation, sender, key, text, agent, priority, _encode_meta(meta)
        )

        async def run(cur: Cursor, now: float) -> IngestResult | _Conflict:
            return await _ingest_one(cur, now, row, self.token, announce=True)

        result = await self._auto(run)
        if isinstance(result, _Conflict):
            await self._record_conflict(result)
            raise IdempotencyConflict(str(result))
        if result.created:
            self._notify("message", [result.message.id])
        return result

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
