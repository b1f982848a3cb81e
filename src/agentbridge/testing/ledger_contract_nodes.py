"""The ledger contract, fleet half: nodes, named leases with fencing tokens, and the agent
lease fencing every write of a store that took one (``agentbridge.ledger.nodes``)."""

from __future__ import annotations

import pytest

from agentbridge.ledger.store import LedgerStore, NodeTaken, OwnerLost, StaleLease
from agentbridge.states import MessageState
from agentbridge.testing.ledger_contract_base import (
    LEASE,
    ManualClock,
    StoreFactory,
    StoreFixtures,
    ingest,
)

pytestmark = pytest.mark.asyncio

TTL = 5.0


class NodeContract(StoreFixtures):
    """Nodes and leases through the ``LedgerStore`` protocol only."""

    async def test_a_live_node_name_is_refused_to_a_second_instance(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        first = await store.register_node("n1", "i1", "host-a", 11, TTL)
        assert (first.name, first.instance, first.pid) == ("n1", "i1", 11)
        with pytest.raises(NodeTaken, match="n1 is already running"):
            await store.register_node("n1", "i2", "host-a", 12, TTL)
        clock.advance(TTL / 2)
        assert await store.node_heartbeat("n1", "i1")
        clock.advance(TTL + 1)  # no heartbeat for longer than the ttl: dead, the name is free
        second = await store.register_node("n1", "i2", "host-a", 12, TTL)
        assert second.instance == "i2"
        assert not await store.node_heartbeat("n1", "i1"), "the old instance lost the name"
        forced = await store.register_node("n1", "i3", "host-a", 13, TTL, force=True)
        assert forced.pid == 13
        await store.leave_node("n1", "i3")
        [node] = await store.list_nodes()
        assert node.stopped_at is not None and not node.alive(clock(), TTL)
        assert (await store.register_node("n1", "i4", "host-a", 14, TTL)).stopped_at is None

    async def test_lease_tokens_grow_with_every_owner(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        a = await store.acquire_lease("leader", "A", 3.0)
        assert a is not None and a.token == 1 and a.node == "A"
        assert await store.acquire_lease("leader", "B", 3.0) is None, "held and not expired"
        clock.advance(2.0)
        renewed = await store.renew_lease("leader", "A", a.token, 3.0)
        assert renewed is not None and renewed.expires_at == clock() + 3.0
        clock.advance(3.5)
        assert await store.acquire_lease("leader", "B", 3.0, takeover=False) is None, "pinned"
        b = await store.acquire_lease("leader", "B", 3.0)
        assert b is not None and b.token == 2 and b.node == "B"
        assert await store.renew_lease("leader", "A", a.token, 3.0) is None, "A lost it"
        again = await store.acquire_lease("leader", "B", 3.0)  # a restarted B: new epoch
        assert again is not None and again.token == 3
        await store.release_lease("leader", "B", again.token)
        c = await store.acquire_lease("leader", "C", 3.0)  # released: free at once
        assert c is not None and c.token == 4
        assert [(x.name, x.node, x.token) for x in await store.list_leases()] == [
            ("leader", "C", 4)
        ]

    async def test_a_node_that_lost_its_agent_cannot_write_for_it(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        node_a = await store_factory(clock=clock)
        node_b = await store_factory(clock=clock)
        try:
            lease_a = await node_a.acquire_lease("agent:x", "A", 3.0)
            assert lease_a is not None
            first = await ingest(node_a, "one", conversation="c1", agent="x")
            second = await ingest(node_a, "two", conversation="c2", agent="x")
            held = await node_a.claim_next("x", "A/x/1", LEASE, exclusive=False)
            assert held is not None and held.id == first.id
            await node_a.mark_submitted(held.id, held.fence)
            clock.advance(3.5)  # A is paused past its lease; B takes the agent over
            lease_b = await node_b.acquire_lease("agent:x", "B", 3.0)
            assert lease_b is not None and lease_b.token == lease_a.token + 1
            # the resumed A: every write it makes for x is refused by the database
            with pytest.raises(OwnerLost, match="node A no longer holds"):
                await node_a.complete(held.id, held.fence, "late answer")
            with pytest.raises(OwnerLost):
                await node_a.heartbeat(held.id, held.fence, LEASE)
            with pytest.raises(StaleLease):  # OwnerLost is a StaleLease: callers stay correct
                await node_a.requeue_victim(held.id, held.fence, "A's own recovery")
            assert await node_a.claim_next("x", "A/x/1", LEASE, exclusive=False) is None
            refused = [e for e in await node_b.events_for(held.id) if e.kind == "refused"]
            assert len(refused) == 3 and "token 1" in refused[0].detail
            assert (await node_b.get(held.id)).state == MessageState.SUBMITTED
            assert (await node_b.get(second.id)).state == MessageState.QUEUED
            # B, the owner, replays the victim and finishes it
            [victim] = await node_b.victims(agent="x")
            replayed = await node_b.requeue_victim(victim.id, victim.fence, "node A died")
            assert replayed.attempt == 2
            again = await node_b.claim_next("x", "B/x/1", LEASE, exclusive=False)
            assert again is not None and again.id == first.id
            done = await node_b.complete(again.id, again.fence, "the answer")
            assert done.state == MessageState.COMPLETED and done.reply == "the answer"
            # the old owner regains nothing by renewing its stale token
            assert await node_a.renew_lease("agent:x", "A", lease_a.token, 3.0) is None
            with pytest.raises(OwnerLost):
                await node_a.fail(second.id, 0, "a guess")
        finally:
            await node_a.close()
            await node_b.close()

    async def test_a_strict_store_writes_only_for_agents_it_owns(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        node_a = await store_factory(clock=clock)
        node_b = await store_factory(clock=clock)
        try:
            await node_a.acquire_lease("agent:x", "A", 3.0)
            node_b.fences.strict("B")
            msg = await ingest(node_a, "one", agent="x")
            assert await node_b.claim_next("x", "B/x/1", LEASE) is None, "B does not own x"
            claimed = await node_a.claim_next("x", "A/x/1", LEASE)
            assert claimed is not None and claimed.id == msg.id
            with pytest.raises(OwnerLost, match="node B no longer holds"):
                await node_b.requeue_victim(claimed.id, claimed.fence, "B's wake sweep")
            done = await node_a.complete(claimed.id, claimed.fence, "fine")
            assert done.state == MessageState.COMPLETED
        finally:
            await node_a.close()
            await node_b.close()

    async def test_a_store_without_agent_leases_writes_unfenced(self, store: LedgerStore) -> None:
        lease = await store.acquire_lease("leader", "A", 3.0)  # not an agent lease
        assert lease is not None
        msg = await ingest(store, "hi", agent="y")
        claimed = await store.claim_next("y", "o", LEASE)
        assert claimed is not None and claimed.id == msg.id
        assert (await store.complete(claimed.id, claimed.fence, "ok")).state == "completed"

    async def test_recovery_takes_only_dead_nodes_sends(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        """A node's start (or sweep) never turns a row a live node is sending into unknown."""
        node_a = await store_factory(clock=clock)
        node_b = await store_factory(clock=clock)
        try:
            for store, name in ((node_a, "A"), (node_b, "B")):
                await store.register_node(name, f"{name}-1", "host", 1, TTL)
                store.fences.strict(name, TTL)
            rows = [await node_a.enqueue_reply("ch", "c", f"r{i}", f"k{i}") for i in range(2)]
            sending = await node_a.claim_due_reply()
            assert sending is not None and (sending.id, sending.node) == (rows[0].id, "A")
            mine = await node_b.claim_due_reply()
            assert mine is not None and mine.node == "B"
            assert await node_b.recover_sending(own=False) == [], "A is alive; B's is B's"
            assert (await node_b.get_reply(sending.id)).state == "sending"
            clock.advance(TTL + 1)  # A stops heartbeating: dead; B goes on
            assert await node_b.node_heartbeat("B", "B-1")
            assert [r.id for r in await node_b.recover_sending(own=False)] == [sending.id]
            assert (await node_b.get_reply(mine.id)).state == "sending", "B's own, live"
            assert [r.id for r in await node_b.recover_sending()] == [mine.id], "a B restart"
        finally:
            await node_a.close()
            await node_b.close()
