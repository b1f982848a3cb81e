"""What only the PostgreSQL ledger has to prove, on a real private server: several stores on
one database (SKIP LOCKED claims never wait on or share a row), LISTEN/NOTIFY across
connections, and a lost connection that costs no change (the re-scan after reconnecting)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import psycopg
import pytest_asyncio

from agentbridge.kinds import ChangeKind
from agentbridge.ledger.postgres.admin import backends_of, terminate_backend
from agentbridge.ledger.postgres.core import PostgresLedger
from agentbridge.ledger.postgres.schema import SCHEMA_VERSION
from agentbridge.ledger.store import LedgerStore, open_ledger
from agentbridge.states import MessageState
from agentbridge.testing.postgres import PostgresServer

LEASE = 60.0
Opener = Callable[[], Awaitable[PostgresLedger]]


@pytest_asyncio.fixture
async def opener(postgres_url: str) -> AsyncIterator[Opener]:
    """Opens stores on one database (as several supervisors would); closes them after."""
    opened: list[PostgresLedger] = []

    async def open_one() -> PostgresLedger:
        store = await open_ledger(postgres_url)
        assert isinstance(store, PostgresLedger)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


class Heard:
    """A listener that records what it heard and wakes a waiter."""

    def __init__(self) -> None:
        self.seen: list[tuple[ChangeKind, int]] = []
        self._changed = asyncio.Event()

    def __call__(self, kind: ChangeKind, ident: int) -> None:
        self.seen.append((kind, ident))
        self._changed.set()

    async def until(
        self, kind: ChangeKind, ident: int, timeout: float = 10.0, *, times: int = 1
    ) -> None:
        """Wait until ``(kind, ident)`` was heard ``times`` times."""
        async with asyncio.timeout(timeout):
            while self.seen.count((kind, ident)) < times:
                self._changed.clear()
                await self._changed.wait()


async def _drain(store: LedgerStore, owner: str) -> list[int]:
    """Claim until nothing is claimable (several in flight: not exclusive)."""
    got: list[int] = []
    while (msg := await store.claim_next("a", owner, LEASE, exclusive=False)) is not None:
        got.append(msg.id)
    return got


async def test_two_stores_claim_disjoint_messages_concurrently(opener: Opener) -> None:
    """Two stores race over 30 conversations of 2 messages: every head is claimed exactly
    once, never two of one conversation, and the second messages wait for their heads."""
    one, two = await opener(), await opener()
    heads = []
    for c in range(30):
        heads.append((await one.ingest("ch", f"c{c}", "s", "head", agent="a")).message.id)
        await one.ingest("ch", f"c{c}", "s", "second", agent="a")
    first, second = await asyncio.gather(_drain(one, "node-1"), _drain(two, "node-2"))
    assert sorted(first + second) == sorted(heads)
    assert not set(first) & set(second)
    flying = await one.list_messages(state="claimed")
    assert len({m.conversation for m in flying}) == len(flying) == 30


async def test_a_row_locked_elsewhere_is_skipped_not_waited_on(
    opener: Opener, postgres_url: str
) -> None:
    """While another session holds the head's row lock, a claim takes the next
    conversation's head at once (SKIP LOCKED) and never a later message of the locked one."""
    store = await opener()
    locked = (await store.ingest("ch", "c1", "s", "1", agent="a")).message
    await store.ingest("ch", "c1", "s", "2", agent="a")
    free = (await store.ingest("ch", "c2", "s", "3", agent="a")).message
    async with await psycopg.AsyncConnection.connect(postgres_url) as holder:
        await holder.execute("SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (locked.id,))
        async with asyncio.timeout(5):  # a claim that waited for the lock would hang here
            got = await store.claim_next("a", "o", LEASE, exclusive=False)
            assert got is not None and got.id == free.id
            assert await store.claim_next("a", "o", LEASE, exclusive=False) is None
    again = await store.claim_next("a", "o", LEASE, exclusive=False)
    assert again is not None and again.id == locked.id


async def test_exclusive_claims_of_one_agent_by_two_stores(opener: Opener) -> None:
    """``exclusive`` holds across stores: racing claims leave one message in flight."""
    one, two = await opener(), await opener()
    for c in range(6):
        await one.ingest("ch", f"c{c}", "s", "x", agent="a")
    got = await asyncio.gather(
        *(s.claim_next("a", f"o{i}", LEASE) for i, s in enumerate([one, two] * 4))
    )
    assert sum(m is not None for m in got) == 1
    assert len(await one.list_messages(state="claimed")) == 1


async def test_a_notify_wakes_a_subscriber_on_another_connection(opener: Opener) -> None:
    """Store B hears A's ingest and A's reply through LISTEN/NOTIFY; A hears its own change
    once (at commit), never again through its own feed."""
    one, two = await opener(), await opener()
    mine, theirs = Heard(), Heard()
    one.on_change(mine)
    two.on_change(theirs)
    await asyncio.wait_for(one.feed.listening.wait(), 10)
    await asyncio.wait_for(two.feed.listening.wait(), 10)
    msg = (await one.ingest("ch", "c1", "s", "hi", agent="a")).message
    await theirs.until(ChangeKind.MESSAGE, msg.id)
    row = await one.enqueue_reply("ch", "c1", "reply", "k-1")
    await theirs.until(ChangeKind.OUTBOX, row.id)
    later = (await two.ingest("ch", "c2", "s", "from two", agent="a")).message
    await mine.until(ChangeKind.MESSAGE, later.id)  # after A's own notifications, in order
    assert mine.seen.count((ChangeKind.MESSAGE, msg.id)) == 1
    claimed = await two.claim_next("a", "node-2", LEASE)
    assert claimed is not None and claimed.id == msg.id
    await mine.until(ChangeKind.MESSAGE, msg.id, times=2)  # the claim on node 2


async def test_a_killed_listener_loses_no_change(
    opener: Opener, postgres_url: str, postgres_server: PostgresServer
) -> None:
    """B's listening session is ended while reconnecting is impossible; A commits during
    the gap (its notification reaches nobody). B reconnects and its re-scan announces it."""
    one, two = await opener(), await opener()
    heard = Heard()
    two.on_change(heard)
    await asyncio.wait_for(two.feed.listening.wait(), 10)
    admin, name = postgres_server.admin_url, _database(postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            pid = two.feed.backend_pid
            assert pid is not None and terminate_backend(admin, pid)
            async with asyncio.timeout(10):
                while two.feed.reconnects == 0:
                    await asyncio.sleep(0.01)
            lost = (await one.ingest("ch", "c1", "s", "during the gap", agent="a")).message
            assert (ChangeKind.MESSAGE, lost.id) not in heard.seen
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    await heard.until(ChangeKind.MESSAGE, lost.id, timeout=15)
    assert two.feed.rescanned >= 1 and two.feed.listening.is_set()
    after = (await one.ingest("ch", "c2", "s", "after", agent="a")).message
    await heard.until(ChangeKind.MESSAGE, after.id)  # and NOTIFY works again


async def test_lost_pool_connections_are_replaced(
    opener: Opener, postgres_url: str, postgres_server: PostgresServer
) -> None:
    """Every session of the store is ended server-side: the next calls still commit."""
    store = await opener()
    msg = (await store.ingest("ch", "c1", "s", "before", agent="a")).message
    for pid in backends_of(postgres_server.admin_url, _database(postgres_url)):
        terminate_backend(postgres_server.admin_url, pid)
    again = await store.ingest("ch", "c2", "s", "after", agent="a")
    assert again.created and again.message.id > msg.id
    claimed = await store.claim_next("a", "o", LEASE)
    assert claimed is not None and claimed.state == MessageState.CLAIMED


async def test_a_second_open_sees_the_same_schema(opener: Opener, postgres_url: str) -> None:
    """Migrations run once: stores opened together agree, schema_version lists each step once."""
    stores = await asyncio.gather(*(opener() for _ in range(3)))
    msg = (await stores[0].ingest("ch", "c1", "s", "x", key="k", agent="a")).message
    assert (await stores[2].get(msg.id)).text == "x"
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in await cur.fetchall()] == list(range(1, SCHEMA_VERSION + 1))
