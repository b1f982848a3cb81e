"""``events_since`` on PostgreSQL against a real server: two concurrent transactions whose ids
commit out of order must not make a reader skip the earlier id (the web console's live
stream resumes from the last id it saw), and concurrent ingests sharing one commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
import pytest_asyncio

from agentbridge.ledger.postgres import tail
from agentbridge.ledger.postgres.core import PostgresLedger

#: draws the next event id inside an open transaction (its xid first, as the ledger does)
_EARLY = (
    "INSERT INTO events (at, actor, kind, detail) SELECT 0, 'test', 'early', ''"
    " FROM (SELECT pg_current_xact_id()) AS x RETURNING id"
)


@pytest_asyncio.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresLedger]:
    opened = await PostgresLedger.open(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


async def _open_early(url: str) -> tuple[psycopg.AsyncConnection[tuple[int]], int]:
    """A session holding the next event id in a transaction it has not committed."""
    conn: psycopg.AsyncConnection[tuple[int]] = await psycopg.AsyncConnection.connect(url)
    row = await (await conn.execute(_EARLY)).fetchone()
    assert row is not None
    return conn, int(row[0])


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.005)


async def test_a_late_commit_of_an_earlier_id_is_not_skipped(
    store: PostgresLedger, postgres_url: str
) -> None:
    """T1 draws id n and stays open; T2 draws n+1 and commits. A plain ``id > head`` read
    then sees n+1 without n (the miss); ``events_since`` waits for T1 and returns both."""
    await store.ingest("ch", "c1", "alice", "before")
    head = (await store.events_since(0))[-1].id
    early, early_id = await _open_early(postgres_url)
    try:
        late = await store.ingest("ch", "c2", "alice", "after")
        [late_event] = await store.events_for(late.message.id)
        assert early_id < late_event.id
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as raw:
            cur = await raw.execute("SELECT id FROM events WHERE id > %s ORDER BY id", (head,))
            assert [r[0] for r in await cur.fetchall()] == [late_event.id]  # the hazard
        reader = asyncio.create_task(store.events_since(head))
        await _until(lambda: reader.done() or store.tail_stats.waits > 0)
        if reader.done():  # it answered while T1 was open: its cursor would skip T1's id
            assert early_id in [e.id for e in reader.result()], "skipped a late commit"
        await early.commit()
    finally:
        await early.close()
    got = await asyncio.wait_for(reader, 10)
    assert [e.id for e in got] == [early_id, late_event.id]
    assert store.tail_stats.cut_short == 0


async def test_a_stuck_writer_holds_the_tail_back_to_its_gap(
    store: PostgresLedger, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction left open past the wait: the reader returns what precedes its id, not
    what follows it, and returns the rest once it ends (rolled back: the gap is skipped)."""
    monkeypatch.setattr(tail, "WAIT_SECONDS", 0.2)
    await store.ingest("ch", "c1", "alice", "one")
    head = (await store.events_since(0))[-1].id
    await store.ingest("ch", "c2", "alice", "two")
    early, early_id = await _open_early(postgres_url)
    try:
        await store.ingest("ch", "c3", "alice", "three")
        got = await store.events_since(head)
        assert [e.id for e in got] == [head + 1] and early_id == head + 2
        assert store.tail_stats.cut_short == 1
        await early.rollback()
    finally:
        await early.close()
    rest = await store.events_since(head + 1)
    assert [e.id for e in rest] == [early_id + 1]
