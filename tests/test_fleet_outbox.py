"""Two supervisors against one real PostgreSQL server: a reply a live node is sending is
never turned ``unknown`` by another node's start, and a dead node's one is, within its lease.

The row "being sent by A" is reserved through a store made strict as node A (A's relay does
exactly that) on a channel no node runs, so it stays ``sending`` for as long as the test
needs: the real supervisors' starts and sweeps are what is under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.ledger.store import open_ledger
from agentbridge.models import OutboxItem
from agentbridge.testing.postgres import (
    PostgresServer,
    fresh_database,
    private_server,
)
from fleet_harness import BEAT, LEASE, Node, db, demo, stop_all, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A private server of this module's own."""
    with private_server() as started:
        yield started


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    with fresh_database(server, "ab_fleet_outbox") as made:
        yield made


def reserve_as(url: str, node: str) -> OutboxItem:
    """A reply reserved (``sending``) by ``node``'s relay, as that relay reserves one."""

    async def run() -> OutboxItem:
        store = await open_ledger(url)
        try:
            store.fences.strict(node, LEASE)
            await store.enqueue_reply("ghost", "c1", "in flight", "ghost:1")
            item = await store.claim_due_reply(["ghost"])
            assert item is not None
            return item
        finally:
            await store.close()

    return asyncio.run(run())


def heartbeats(node: Node, count: int) -> None:
    """Until ``node`` heartbeated ``count`` more times (each beat is followed by its sweep)."""
    first = next(n for n in db(node.url, lambda s: s.list_nodes()) if n.name == node.name)
    wait_for(
        lambda: any(
            n.name == node.name and n.heartbeat_at >= first.heartbeat_at + count * BEAT * 0.9
            for n in db(node.url, lambda s: s.list_nodes())
        ),
        f"{node.name}: {count} heartbeats",
    )


def test_a_live_nodes_send_survives_a_start_and_a_dead_ones_becomes_unknown(
    tmp_path: Path, url: str
) -> None:
    a = Node(tmp_path, url, "A", {"a1": demo()})
    b = Node(tmp_path, url, "B", {"b1": demo()})
    try:
        a.start_node()
        row = reserve_as(url, "A")
        assert (row.state, row.node) == ("sending", "A")
        b.start_node()  # B's relay starts (its recovery) and B sweeps after each heartbeat
        heartbeats(b, 3)
        assert db(url, lambda s: s.get_reply(row.id)).state == "sending", "A is alive"
        a.die()
        unknown = wait_for(
            lambda: (x := db(url, lambda s: s.get_reply(row.id))).state == "unknown" and x,
            "B recovered A's send",
            timeout=LEASE + 15,
        )
        assert unknown.attempts == 1, "never resent"
        trail = [e for e in db(url, lambda s: s.events_since(0)) if e.outbox_id == row.id]
        assert trail[-1].detail == "the bridge stopped while sending; not resent blindly"
        assert "node A died while sending it" in b.log_tail()
    finally:
        stop_all(a, b)
