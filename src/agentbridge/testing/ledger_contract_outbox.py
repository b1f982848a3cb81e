"""The ledger contract, outbound half and the rest: the outbox (write-ahead, reserve, retry
and backoff, ``unknown`` never re-claimed), the audit trail, change notifications, retention
and tombstones, nonces, and the counts ``status`` shows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentbridge.kinds import ChangeKind
from agentbridge.ledger.store import (
    IdempotencyConflict,
    IllegalTransition,
    LedgerStore,
    NotFound,
)
from agentbridge.models import OutboxItem
from agentbridge.states import MessageState, OutboxState
from agentbridge.testing.ledger_contract_base import (
    LEASE,
    ManualClock,
    StoreFactory,
    StoreFixtures,
    claim,
    in_flight,
    ingest,
)

pytestmark = pytest.mark.asyncio
DAY = 86400.0


async def reply(
    store: LedgerStore,
    text: str = "a reply",
    *,
    scheduled_at: float | None = None,
    ttl: float = DAY,
) -> OutboxItem:
    """A pending reply on channel ``ch`` (no message of its own)."""
    return await store.enqueue_reply(
        "ch", "c1", text, f"key:{text}", scheduled_at=scheduled_at, ttl=ttl
    )


async def finished(store: LedgerStore, text: str, **kwargs: Any) -> int:
    """A message taken through to ``completed`` without a reply row; returns its id."""
    msg = await in_flight(store, text, **kwargs)
    await store.complete(msg.id, msg.fence, "done", queue_reply=False)
    return msg.id


class Heard:
    """A change listener: records ``(kind, id)`` and wakes whoever waits for a kind."""

    def __init__(self) -> None:
        self.seen: list[tuple[ChangeKind, int]] = []
        self._changed = asyncio.Event()

    def __call__(self, kind: ChangeKind, ident: int) -> None:
        self.seen.append((kind, ident))
        self._changed.set()

    async def wait_for(self, kind: ChangeKind, timeout: float = 10.0) -> int:
        """The id of the first change of ``kind`` heard (waits up to ``timeout`` for it)."""
        async with asyncio.timeout(timeout):
            while not any(k == kind for k, _ in self.seen):
                self._changed.clear()
                await self._changed.wait()
        return next(i for k, i in self.seen if k == kind)


class OutboxContract(StoreFixtures):
    """Replies, events, changes, retention, nonces and stats through ``LedgerStore`` only."""

    # ------------------------------------------------------------------ write-ahead replies

    @pytest.mark.asyncio
    async def test_complete_writes_the_reply_ahead(self, store: LedgerStore) -> None:
        """Completing queues exactly one pending reply, to the sender's conversation."""
        msg = await in_flight(store, key="p-7", conversation="c5")
        await store.complete(msg.id, msg.fence, "the answer")
        [row] = await store.list_replies(message_id=msg.id)
        assert (row.state, row.text, row.attempts) == (OutboxState.PENDING, "the answer", 0)
        assert (row.channel, row.conversation, row.reply_to) == ("ch", "c5", "p-7")
        assert await store.get_reply(row.id) == row
        other = await in_flight(store, conversation="c6")
        await store.complete(other.id, other.fence, "kept", queue_reply=False)
        assert await store.list_replies(message_id=other.id) == []

    @pytest.mark.asyncio
    async def test_enqueue_is_idempotent_on_its_key(self, store: LedgerStore) -> None:
        """The same key returns the same row (no second send); other text is refused."""
        first = await store.enqueue_reply("ch", "c1", "hi", "key-1")
        assert (await store.enqueue_reply("ch", "c1", "hi", "key-1")).id == first.id
        with pytest.raises(IdempotencyConflict):
            await store.enqueue_reply("ch", "c1", "changed", "key-1")
        assert [r.id for r in await store.list_replies()] == [first.id]
        with pytest.raises(NotFound):
            await store.get_reply(10**9)

    @pytest.mark.asyncio
    async def test_claim_reserves_one_attempt(self, store: LedgerStore) -> None:
        """A claim makes the row ``sending`` with attempts + 1; nobody can reserve it again."""
        row = await reply(store)
        assert await store.next_due_reply() == row  # a peek changes nothing
        sending = await store.claim_due_reply()
        assert sending is not None and sending.id == row.id
        assert (sending.state, sending.attempts) == (OutboxState.SENDING, 1)
        assert await store.claim_due_reply() is None
        with pytest.raises(IllegalTransition):
            await store.reserve_send(row.id)
        other = await reply(store, "second")
        assert (await store.reserve_send(other.id)).state == OutboxState.SENDING

    @pytest.mark.asyncio
    async def test_schedule_and_channels(self, store: LedgerStore, clock: ManualClock) -> None:
        """A row is due at ``scheduled_at``; a claim may be limited to some channels."""
        later = await reply(store, "later", scheduled_at=clock() + 30)
        assert await store.claim_due_reply() is None
        assert await store.next_reply_due_at() == pytest.approx(clock() + 30)
        elsewhere = await store.enqueue_reply("other", "c1", "x", "key-x")
        assert await store.claim_due_reply(channels=["ch"]) is None
        assert (await store.claim_due_reply(channels=["other"])) is not None
        clock.advance(30)
        due = await store.claim_due_reply(channels=["ch", "nope"])
        assert due is not None and due.id == later.id and elsewhere.id != later.id

    @pytest.mark.asyncio
    async def test_retry_waits_its_backoff(self, store: LedgerStore, clock: ManualClock) -> None:
        """A transient failure goes back to ``pending`` after the delay; attempts keep count."""
        row = await reply(store)
        await store.claim_due_reply()
        back = await store.mark_retry(row.id, "429", 10)
        assert (back.state, back.last_error) == (OutboxState.PENDING, "429")
        assert back.scheduled_at == pytest.approx(clock() + 10)
        assert await store.claim_due_reply() is None
        with pytest.raises(IllegalTransition):  # only a reserved attempt can be retried
            await store.mark_retry(row.id, "again", 1)
        clock.advance(10)
        again = await store.claim_due_reply()
        assert again is not None and again.attempts == 2

    @pytest.mark.asyncio
    async def test_parts_then_sent(self, store: LedgerStore) -> None:
        """Each landed part is recorded (a retry resumes after it); ``sent`` is final."""
        row = await reply(store)
        await store.claim_due_reply()
        part = await store.mark_part_sent(row.id, 1, "pm-1")
        assert (part.parts_sent, part.platform_message_id) == (1, "pm-1")
        sent = await store.mark_sent(row.id, "pm-2")
        assert sent.state == OutboxState.SENT and sent.parts_sent == 1
        with pytest.raises(IllegalTransition):
            await store.retry_reply(row.id)
        with pytest.raises(IllegalTransition):
            await store.reserve_send(row.id)

    @pytest.mark.asyncio
    async def test_failed_then_a_human_retry(self, store: LedgerStore) -> None:
        """A permanent failure stays until someone asks again; then it is due at once."""
        row = await reply(store)
        await store.claim_due_reply()
        failed = await store.mark_failed(row.id, "chat not found")
        assert (failed.state, failed.last_error) == (OutboxState.FAILED, "chat not found")
        assert await store.claim_due_reply() is None
        assert (await store.retry_reply(row.id)).state == OutboxState.PENDING
        assert (await store.claim_due_reply()) is not None

    @pytest.mark.asyncio
    async def test_unknown_is_never_claimed_again(self, store: LedgerStore) -> None:
        """A send in doubt waits for a decision: reconcile (resume, landed) or a human."""
        row = await reply(store, "one")
        await store.claim_due_reply()
        doubt = await store.mark_unknown(row.id, "answer lost", error="timeout")
        assert doubt.state == OutboxState.UNKNOWN
        assert await store.claim_due_reply() is None and await store.next_due_reply() is None
        assert await store.next_reply_due_at() is None
        with pytest.raises(IllegalTransition):
            await store.reserve_send(row.id)
        with pytest.raises(IllegalTransition):
            await store.mark_retry(row.id, "x", 0)
        resumed = await store.resume_reply(row.id, 1, "pm-1")
        assert (resumed.state, resumed.parts_sent) == (OutboxState.PENDING, 1)
        with pytest.raises(IllegalTransition):  # only an unknown row can be resumed or landed
            await store.mark_landed(row.id)
        await store.claim_due_reply()
        await store.mark_unknown(row.id)
        assert (await store.mark_landed(row.id, "pm-2")).state == OutboxState.SENT

    @pytest.mark.asyncio
    async def test_a_restart_turns_sending_into_unknown(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        """A bridge that died mid-send left ``sending``: the next start never resends it."""
        first = await store_factory(clock=clock)
        try:
            row = await reply(first)
            await first.claim_due_reply()
        finally:
            await first.close()
        second = await store_factory(clock=clock)
        try:
            assert [r.id for r in await second.recover_sending()] == [row.id]
            assert (await second.get_reply(row.id)).state == OutboxState.UNKNOWN
            assert await second.claim_due_reply() is None
        finally:
            await second.close()

    @pytest.mark.asyncio
    async def test_expiry(self, store: LedgerStore, clock: ManualClock) -> None:
        """Past its time to live a pending reply is not sent; ``expire_replies`` closes it."""
        row = await reply(store, ttl=10)
        clock.advance(11)
        assert await store.claim_due_reply() is None
        assert await store.expire_replies() == 1
        assert (await store.get_reply(row.id)).state == OutboxState.EXPIRED
        assert await store.list_replies(state="expired") == [await store.get_reply(row.id)]

    # ------------------------------------------------------------------ audit trail

    @pytest.mark.asyncio
    async def test_events_are_an_ordered_tail(self, store: LedgerStore) -> None:
        """Event ids only grow; ``events_since`` returns what came after, up to ``limit``."""
        await ingest(store, conversation="c1", agent="z")
        head = (await store.events_since(0))[-1].id
        msg = await in_flight(store, conversation="c2")
        await store.note(msg.id, "console", "receipt", "working")
        new = await store.events_since(head)
        assert [e.id for e in new] == sorted(e.id for e in new) and new[0].id > head
        assert [e.kind for e in new][-1] == "receipt" and len(new) == 3
        assert len(await store.events_since(0, limit=2)) == 2
        [note] = [e for e in await store.events_for(msg.id) if e.kind == "receipt"]
        assert (note.actor, note.detail) == ("console", "working")

    @pytest.mark.asyncio
    async def test_a_messages_trail_includes_its_replies(self, store: LedgerStore) -> None:
        """``events_for`` shows the reply's own moves next to the message's."""
        msg = await in_flight(store)
        await store.complete(msg.id, msg.fence, "hi")
        [row] = await store.list_replies(message_id=msg.id)
        await store.claim_due_reply()
        await store.mark_sent(row.id, "pm")
        assert sum(e.outbox_id == row.id for e in await store.events_for(msg.id)) >= 3

    # ------------------------------------------------------------------ change notifications

    @pytest.mark.asyncio
    async def test_a_change_wakes_a_waiter(self, store: LedgerStore) -> None:
        """Ingest, transitions and replies notify (kind, id); unsubscribed listeners hear
        nothing more, and a listener's bug never undoes the write."""
        heard, other = Heard(), Heard()

        def broken(kind: ChangeKind, ident: int) -> None:
            raise RuntimeError("a listener's bug")

        unsubscribe = store.on_change(heard)
        store.on_change(broken)
        waiter = asyncio.create_task(heard.wait_for(ChangeKind.MESSAGE))  # before the write
        msg = await ingest(store)
        assert await waiter == msg.id and isinstance(heard.seen[0][0], ChangeKind)
        assert (await store.get(msg.id)).state == MessageState.QUEUED
        row = await reply(store)
        assert await heard.wait_for(ChangeKind.OUTBOX) == row.id
        unsubscribe()
        unsubscribe()  # shutdown paths may call it twice
        store.on_change(other)
        later = await ingest(store, conversation="c2")
        assert await other.wait_for(ChangeKind.MESSAGE) == later.id
        assert (ChangeKind.MESSAGE, later.id) not in heard.seen

    # ------------------------------------------------------------------ retention

    @pytest.mark.asyncio
    async def test_retention_prunes_only_what_is_finished(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        """Old finished messages and sent replies go; queued, in flight, quarantined and
        finished-but-undelivered stay; ids are never handed out twice."""
        old = await finished(store, "old", key="k-old", conversation="c1")
        queued = await ingest(store, conversation="c2", agent="z")
        flying = await in_flight(store, conversation="c3")
        stuck = await store.quarantine((await ingest(store, conversation="c4")).id, "?")
        undelivered = await in_flight(store, conversation="c5")
        await store.complete(undelivered.id, undelivered.fence, "not yet sent")
        delivered = await in_flight(store, conversation="c6")
        await store.complete(delivered.id, delivered.fence, "sent")
        [sent] = await store.list_replies(message_id=delivered.id)
        await store.reserve_send(sent.id)
        await store.mark_sent(sent.id, "pm")
        clock.advance(2 * DAY)
        recent = await finished(store, "recent", conversation="c7")
        assert await store.prune(DAY) == (2, 1)
        for gone in (old, delivered.id):
            with pytest.raises(NotFound):
                await store.get(gone)
        for kept in (queued.id, flying.id, stuck.id, undelivered.id, recent):
            await store.get(kept)
        assert await store.list_replies(state="sent") == []
        newest = await ingest(store, conversation="c8")
        assert newest.id > recent > delivered.id

    @pytest.mark.asyncio
    async def test_a_pruned_key_stays_a_duplicate(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        """A late redelivery of a pruned message is "already processed" (its id), until the
        tombstone itself expires; other text under that key is still a conflict."""
        old = await finished(store, "hello", key="k-1")
        clock.advance(2 * DAY)
        await ingest(store, "keeps the newest id", conversation="c2")
        assert (await store.prune(DAY, tombstone_seconds=10 * DAY))[0] == 1
        again = await store.ingest("ch", "c1", "alice", "hello", key="k-1", agent="a")
        assert not again.created and again.message.id == old
        with pytest.raises(IdempotencyConflict):
            await store.ingest("ch", "c1", "alice", "changed", key="k-1", agent="a")
        clock.advance(11 * DAY)
        await store.prune(DAY, tombstone_seconds=10 * DAY)
        fresh = await store.ingest("ch", "c1", "alice", "hello", key="k-1", agent="a")
        assert fresh.created and fresh.message.id > old

    # ------------------------------------------------------------------ nonces, stats

    @pytest.mark.asyncio
    async def test_a_nonce_is_used_once(self, store: LedgerStore, clock: ManualClock) -> None:
        """A signature is accepted once per scope until its window closed."""
        assert await store.claim_nonce("http", "n1", clock() + 300)
        assert not await store.claim_nonce("http", "n1", clock() + 300)
        assert await store.claim_nonce("other", "n1", clock() + 300)
        clock.advance(301)
        assert await store.claim_nonce("http", "n1", clock() + 300)

    @pytest.mark.asyncio
    async def test_stats_count_what_status_shows(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        """Per agent: queued, in flight, stale leases, quarantined, the oldest queued age."""
        await in_flight(store, conversation="c1")
        await ingest(store, conversation="c2")
        await ingest(store, conversation="c3")
        await store.quarantine((await ingest(store, conversation="c4")).id, "?")
        await reply(store)
        clock.advance(LEASE + 40)
        stats = await store.stats()
        a = stats["agents"]["a"]
        assert (a["queued"], a["in_flight"], a["stale"], a["quarantined"]) == (2, 1, 1, 1)
        assert a["oldest_queued_age"] == pytest.approx(LEASE + 40)
        assert {k: n for k, n in stats["messages"].items() if n} == {
            "queued": 2,
            "claimed": 1,
            "quarantined": 1,
        }
        assert {k: n for k, n in stats["outbox"].items() if n} == {"pending": 1}
        assert (await claim(store)).state == MessageState.CLAIMED
