"""The ledger contract, inbound half: ingest and idempotency, claims and leases, every state
transition, fencing, victims and replay, durability across a reopen, concurrent callers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from agentbridge.ledger.store import (
    IdempotencyConflict,
    IllegalTransition,
    LedgerStore,
    NewMessage,
    NotFound,
    StaleLease,
)
from agentbridge.models import Message
from agentbridge.states import MessageState
from agentbridge.testing.ledger_contract_base import (
    LEASE,
    ManualClock,
    StoreFactory,
    StoreFixtures,
    claim,
    in_flight,
    ingest,
    moves,
    refusals,
)

pytestmark = pytest.mark.asyncio


class MessageContract(StoreFixtures):
    """Inbound messages through the ``LedgerStore`` protocol only."""

    # ------------------------------------------------------------------ ingest, idempotency

    @pytest.mark.asyncio
    async def test_ingest_commits_a_queued_row(self, store: LedgerStore) -> None:
        """The ingress ack returns the stored row: queued, attempt 1, no lease; get agrees."""
        msg = await ingest(store, "hi", key="k1", meta={"via": "contract"}, priority=1)
        assert (msg.state, msg.attempt, msg.lease_owner) == (MessageState.QUEUED, 1, None)
        stored = await store.get(msg.id)
        assert (stored.text, stored.platform_id, stored.meta) == ("hi", "k1", {"via": "contract"})
        assert stored.priority == 1 and stored.agent == "a"
        assert await moves(store, msg.id) == ["queued"]

    @pytest.mark.asyncio
    async def test_duplicate_ingest_is_the_same_message(self, store: LedgerStore) -> None:
        """Same ``(channel, key)`` and text: the same id, ``created`` False, no second row."""
        first = await ingest(store, "hi", key="k1")
        again = await store.ingest("ch", "c1", "alice", "hi", key="k1", agent="a")
        assert not again.created and again.message.id == first.id
        assert [m.id for m in await store.list_messages()] == [first.id]
        assert await store.find("ch", "k1") == await store.get(first.id)
        assert await store.find("ch", "nope") is None

    @pytest.mark.asyncio
    async def test_same_key_other_text_is_refused(self, store: LedgerStore) -> None:
        """A key reused with other text raises and is recorded; the stored row is untouched."""
        first = await ingest(store, "hi", key="k1")
        with pytest.raises(IdempotencyConflict):
            await store.ingest("ch", "c1", "alice", "other", key="k1", agent="a")
        assert (await store.get(first.id)).text == "hi"
        kinds = [e.kind for e in await store.events_for(first.id)]
        assert "idempotency_conflict" in kinds

    @pytest.mark.asyncio
    async def test_keys_are_per_channel_and_optional(self, store: LedgerStore) -> None:
        """One key on two channels is two messages; without a key nothing is deduplicated."""
        one = await ingest(store, "hi", key="k1", channel="x")
        two = await ingest(store, "hi", key="k1", channel="y")
        three = await ingest(store, "hi")
        four = await ingest(store, "hi")
        assert len({one.id, two.id, three.id, four.id}) == 4

    @pytest.mark.asyncio
    async def test_ingest_many_is_all_or_nothing(self, store: LedgerStore) -> None:
        """A batch commits together; one conflict in it stores none of it."""
        await ingest(store, "hi", key="k1")
        batch = [NewMessage("ch", "c2", "bob", f"m{i}", key=f"b{i}", agent="a") for i in range(3)]
        done = await store.ingest_many(batch)
        assert [r.created for r in done] == [True, True, True]
        bad = [NewMessage("ch", "c2", "bob", "new", key="b9", agent="a")]
        bad.append(NewMessage("ch", "c1", "alice", "not hi", key="k1", agent="a"))
        with pytest.raises(IdempotencyConflict):
            await store.ingest_many(bad)
        assert await store.find("ch", "b9") is None
        assert len(await store.list_messages()) == 4

    # ------------------------------------------------------------------ claims and leases

    @pytest.mark.asyncio
    async def test_claim_order_priority_then_fifo(self, store: LedgerStore) -> None:
        """The priority lane first, then oldest first; only the claiming agent's messages."""
        old = await ingest(store, "old", conversation="c1")
        new = await ingest(store, "new", conversation="c2")
        other = await ingest(store, "b's", conversation="c3", agent="b")
        urgent = await ingest(store, "urgent", conversation="c4", priority=1)
        order = [(await claim(store)).id for _ in range(3)]
        assert order == [urgent.id, old.id, new.id]
        assert await store.claim_next("a", "owner-1", LEASE, exclusive=False) is None
        assert (await claim(store, "b")).id == other.id

    @pytest.mark.asyncio
    async def test_one_in_flight_per_conversation_and_agent(self, store: LedgerStore) -> None:
        """A conversation's next message waits for the one in flight; ``exclusive`` (the
        default) allows one in flight per agent."""
        first = await ingest(store, "1", conversation="c1")
        await ingest(store, "2", conversation="c1")
        elsewhere = await ingest(store, "3", conversation="c2")
        assert (await store.claim_next("a", "o", LEASE)) == await store.get(first.id)
        assert await store.claim_next("a", "o", LEASE) is None  # exclusive: one per agent
        assert (await claim(store)).id == elsewhere.id  # c1 is busy, c2 is not
        assert await store.claim_next("a", "o", LEASE, exclusive=False) is None

    @pytest.mark.asyncio
    async def test_claim_leases_and_fences(self, store: LedgerStore, clock: ManualClock) -> None:
        """A claim names the owner, sets the expiry and hands out a new fencing version."""
        queued = await ingest(store)
        msg = await claim(store, owner="sess-9")
        assert msg.state == MessageState.CLAIMED and msg.lease_owner == "sess-9"
        assert msg.lease_expires_at == pytest.approx(clock() + LEASE)
        assert msg.fence > queued.fence

    @pytest.mark.asyncio
    async def test_heartbeat_extends_the_lease(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        """A heartbeat from the holder moves expiry and heartbeat time to now."""
        msg = await in_flight(store)
        clock.advance(30)
        beat = await store.heartbeat(msg.id, msg.fence, 120)
        assert beat.lease_expires_at == pytest.approx(clock() + 120)
        assert beat.heartbeat_at == pytest.approx(clock())

    # ------------------------------------------------------------------ transitions

    @pytest.mark.asyncio
    async def test_claimed_submitted_accepted_completed(self, store: LedgerStore) -> None:
        """The happy path: each move recorded, the reply stored, the lease released."""
        msg = await in_flight(store, key="p1")
        assert (await store.mark_submitted(msg.id, msg.fence)).state == MessageState.SUBMITTED
        assert (await store.mark_accepted(msg.id, msg.fence)).state == MessageState.ACCEPTED
        done = await store.complete(msg.id, msg.fence, "the answer")
        assert (done.state, done.reply, done.lease_owner) == (
            MessageState.COMPLETED,
            "the answer",
            None,
        )
        assert await moves(store, msg.id) == [
            "queued",
            "claimed",
            "submitted",
            "accepted",
            "completed",
        ]

    @pytest.mark.asyncio
    async def test_repeated_evidence_never_moves_back(self, store: LedgerStore) -> None:
        """Hook and transcript may both report: a repeat or an older state is a no-op."""
        msg = await in_flight(store)
        await store.mark_accepted(msg.id, msg.fence)
        assert (await store.mark_submitted(msg.id, msg.fence)).state == MessageState.ACCEPTED
        assert (await store.mark_accepted(msg.id, msg.fence)).state == MessageState.ACCEPTED
        assert await moves(store, msg.id) == ["queued", "claimed", "accepted"]

    @pytest.mark.asyncio
    async def test_fail_and_interrupt_end_a_turn(self, store: LedgerStore) -> None:
        """``failed`` keeps its reason; ``interrupted`` is never a victim, a human requeues it."""
        one = await in_flight(store, conversation="c1")
        failed = await store.fail(one.id, one.fence, "boom")
        assert (failed.state, failed.reason, failed.lease_owner) == (
            MessageState.FAILED,
            "boom",
            None,
        )
        two = await in_flight(store, conversation="c2")
        await store.mark_submitted(two.id, two.fence)
        stopped = await store.interrupt(two.id, two.fence, "Esc")
        assert stopped.state == MessageState.INTERRUPTED
        assert await store.victims(agent="a") == []
        again = await store.requeue_quarantined(two.id)
        assert (again.state, again.attempt) == (MessageState.QUEUED, 1)

    @pytest.mark.asyncio
    async def test_illegal_moves_are_refused_and_recorded(self, store: LedgerStore) -> None:
        """No fenced move before a claim or after the end; no requeue of a queued message."""
        queued = await ingest(store, conversation="c1", agent="z")
        with pytest.raises(IllegalTransition):
            await store.fail(queued.id, queued.fence, "a fence guess")
        with pytest.raises(IllegalTransition):
            await store.requeue_quarantined(queued.id)
        msg = await in_flight(store, conversation="c2")
        await store.complete(msg.id, msg.fence, "done", queue_reply=False)
        with pytest.raises(IllegalTransition):
            await store.fail(msg.id, msg.fence, "too late")
        with pytest.raises(StaleLease):  # the current fence, but no lease any more
            await store.heartbeat(msg.id, msg.fence, LEASE)
        assert (await store.get(msg.id)).state == MessageState.COMPLETED
        assert await refusals(store, queued.id) == 2 and await refusals(store, msg.id) == 2
        with pytest.raises(NotFound):
            await store.get(10**9)

    @pytest.mark.asyncio
    async def test_release_gives_a_claim_back_unchanged(self, store: LedgerStore) -> None:
        """Nothing reached the agent: queued again, same attempt, the old fence dead."""
        msg = await in_flight(store)
        back = await store.release(msg.id, msg.fence, "box held text")
        assert (back.state, back.attempt, back.lease_owner) == (MessageState.QUEUED, 1, None)
        assert back.fence != msg.fence
        again = await claim(store)
        await store.mark_submitted(again.id, again.fence)
        with pytest.raises(IllegalTransition):
            await store.release(again.id, again.fence, "keys were sent")

    # ------------------------------------------------------------------ fencing

    @pytest.mark.asyncio
    async def test_a_stale_fence_is_refused(self, store: LedgerStore) -> None:
        """After a replay the old holder's every move is refused, recorded, and changes nothing."""
        old = await in_flight(store)
        await store.requeue_victim(old.id, old.fence, "session died")
        new = await claim(store, owner="owner-2")
        assert new.id == old.id and new.fence != old.fence
        i, f = old.id, old.fence
        stale_moves: list[Callable[[], Awaitable[Message]]] = [
            lambda: store.mark_submitted(i, f),
            lambda: store.mark_accepted(i, f),
            lambda: store.complete(i, f, "late reply"),
            lambda: store.fail(i, f, "late"),
            lambda: store.interrupt(i, f, "late"),
            lambda: store.heartbeat(i, f, LEASE),
            lambda: store.release(i, f, "late"),
            lambda: store.requeue_victim(i, f, "late"),
        ]
        for stale in stale_moves:
            with pytest.raises(StaleLease):
                await stale()
        now = await store.get(old.id)
        assert (now.state, now.lease_owner, now.reply) == (MessageState.CLAIMED, "owner-2", None)
        assert await refusals(store, old.id) == 8
        assert (await store.complete(new.id, new.fence, "ok")).state == MessageState.COMPLETED

    # ------------------------------------------------------------------ victims and replay

    @pytest.mark.asyncio
    async def test_victims_by_owner_agent_and_expiry(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        """In flight only, oldest first, filtered by owner, agent or an expired lease."""
        a1 = await in_flight(store, conversation="c1")
        await ingest(store, "waits", conversation="c9", agent="z")  # queued: never a victim
        await ingest(store, conversation="c2", agent="b")
        b1 = await claim(store, "b", owner="owner-b")
        await store.mark_accepted(b1.id, b1.fence)
        a2 = await in_flight(store, conversation="c3")
        assert [v.id for v in await store.victims(owner="owner-1")] == [a1.id, a2.id]
        assert [v.id for v in await store.victims(agent="b")] == [b1.id]
        assert await store.victims(expired_before=clock()) == []
        clock.advance(LEASE / 2)
        await store.heartbeat(a2.id, a2.fence, LEASE)  # the live holder keeps its lease
        clock.advance(LEASE / 2 + 1)
        assert [v.id for v in await store.victims(expired_before=clock())] == [a1.id, b1.id]

    @pytest.mark.asyncio
    async def test_replay_goes_to_the_head_with_attempt_plus_one(self, store: LedgerStore) -> None:
        """A requeued victim is claimed before the later messages of its conversation."""
        victim = await in_flight(store, "first", conversation="c1")
        later = await ingest(store, "second", conversation="c1")
        await store.mark_submitted(victim.id, victim.fence)
        back = await store.requeue_victim(victim.id, victim.fence, "session died")
        assert (back.state, back.attempt, back.lease_owner) == (MessageState.QUEUED, 2, None)
        again = await claim(store, owner="owner-2")
        assert (again.id, again.attempt) == (victim.id, 2)
        await store.complete(again.id, again.fence, "ok", queue_reply=False)
        assert (await claim(store)).id == later.id

    @pytest.mark.asyncio
    async def test_replay_quarantines_at_the_attempt_limit(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        """At ``max_attempts`` a victim waits for a human (readable reason, old fence dead);
        ``enforce_limit=False`` (a rate limit, not the message's fault) requeues anyway."""
        store = await store_factory(clock=clock, max_attempts=2)
        try:
            msg = await in_flight(store)
            msg = await store.requeue_victim(msg.id, msg.fence, "died")
            msg = await claim(store)
            stuck = await store.requeue_victim(msg.id, msg.fence, "died again")
            assert stuck.state == MessageState.QUARANTINED and "2 attempts" in (stuck.reason or "")
            with pytest.raises(StaleLease):
                await store.complete(msg.id, msg.fence, "late")
            assert await store.claim_next("a", "o", LEASE) is None
            await store.requeue_quarantined(msg.id)  # a human: the attempts start over
            msg = await claim(store)
            msg = await store.requeue_victim(msg.id, msg.fence, "x")
            msg = await claim(store)
            free = await store.requeue_victim(msg.id, msg.fence, "rate limit", enforce_limit=False)
            assert (free.state, free.attempt) == (MessageState.QUEUED, 3)
        finally:
            await store.close()

    @pytest.mark.asyncio
    async def test_quarantine_and_a_humans_decisions(self, store: LedgerStore) -> None:
        """Quarantine stops a queued or in-flight message; requeue starts over; drop fails it."""
        flying = await in_flight(store, conversation="c2")
        queued = await ingest(store, conversation="c1")
        for msg in (queued, flying):
            assert (await store.quarantine(msg.id, "unsure")).state == MessageState.QUARANTINED
        assert await store.claim_next("a", "o", LEASE, exclusive=False) is None
        with pytest.raises(StaleLease):
            await store.mark_submitted(flying.id, flying.fence)
        again = await store.requeue_quarantined(flying.id, actor="console")
        assert (again.state, again.attempt) == (MessageState.QUEUED, 1)
        dropped = await store.drop(queued.id, "not needed", actor="console")
        assert (dropped.state, dropped.reason) == (MessageState.FAILED, "not needed")
        with pytest.raises(IllegalTransition):
            await store.drop(queued.id)

    # ------------------------------------------------------------------ durability, concurrency

    @pytest.mark.asyncio
    async def test_acked_rows_survive_a_reopen(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        """What returned is durable: a reopened store has the ingest, the claim and its lease."""
        first = await store_factory(clock=clock)
        try:
            msg = await in_flight(first, key="k1")
        finally:
            await first.close()
        second = await store_factory(clock=clock)
        try:
            assert (await second.get(msg.id)).lease_owner == "owner-1"
            assert (await second.ingest("ch", "c1", "alice", "hello", key="k1")).created is False
            clock.advance(LEASE + 1)
            assert [v.id for v in await second.victims(expired_before=clock())] == [msg.id]
        finally:
            await second.close()

    @pytest.mark.asyncio
    async def test_concurrent_callers(self, store: LedgerStore) -> None:
        """Twenty producers of one key make one row; racing claimers never share a message."""
        same = await asyncio.gather(
            *(store.ingest("ch", "c1", "alice", "hi", key="k", agent="a") for _ in range(20))
        )
        assert sum(r.created for r in same) == 1 and len({r.message.id for r in same}) == 1
        for i in range(9):
            await ingest(store, conversation=f"c{i + 2}")
        got = await asyncio.gather(
            *(store.claim_next("a", f"o{i}", LEASE, exclusive=False) for i in range(15))
        )
        ids = [m.id for m in got if m is not None]
        assert len(ids) == 10 and len(set(ids)) == 10

    @pytest.mark.asyncio
    async def test_concurrent_ingests_answer_each_caller(self, store: LedgerStore) -> None:
        """Producers that share a commit (a group commit) each get their own row back; one
        caller's conflict is raised to that caller only, and recorded."""
        await store.ingest("ch", "c0", "bob", "first", key="taken")
        calls = [
            *(store.ingest("ch", f"c{i}", "alice", f"text {i}", agent="a") for i in range(12)),
            *(store.ingest("ch", "k", "alice", f"keyed {i}", key=f"k{i}") for i in range(6)),
            store.ingest("ch", "k", "alice", "keyed 0", key="k0"),  # same key, same text
            store.ingest("ch", "c0", "bob", "other", key="taken"),  # same key, other text
        ]
        got = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(got[-1], IdempotencyConflict)
        results = [r for r in got[:-1] if not isinstance(r, BaseException)]
        assert len(results) == 19
        texts = [f"text {i}" for i in range(12)] + [f"keyed {i}" for i in range(6)] + ["keyed 0"]
        for result, text in zip(results, texts, strict=True):
            assert (await store.get(result.message.id)).text == text == result.message.text
        assert sum(r.created for r in results) == 18
        assert results[-1].message.id == results[12].message.id
        assert {e.kind for e in await store.events_since(0)} >= {"idempotency_conflict"}
        trail = [await store.events_for(r.message.id) for r in results[:18]]
        assert all(t and t[0].to_state == MessageState.QUEUED for t in trail)
