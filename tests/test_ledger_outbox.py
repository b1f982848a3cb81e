"""The outbox on a real SQLite file: write-ahead replies, reserved attempts, retries, unknowns.

Time is a fake clock injected with ``Ledger.open(..., clock=...)``: retries and time to live
are checked by moving it, never by sleeping.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbridge.ledger.outbox import DEFAULT_BACKOFF, backoff_delay
from agentbridge.ledger.sqlite import IdempotencyConflict, IllegalTransition, Ledger, NotFound
from agentbridge.states import OutboxState


class FakeClock:
    def __init__(self, t: float = 2_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ledger(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db", clock=clock)
    try:
        yield led
    finally:
        await led.close()


async def test_enqueue_is_idempotent_and_a_conflict_is_recorded(ledger: Ledger) -> None:
    a = await ledger.enqueue_reply("tg", "chat", "hello", key="r1", reply_to="p9")
    b = await ledger.enqueue_reply("tg", "chat", "hello", key="r1")
    assert a.id == b.id and a == b
    assert (a.state, a.attempts, a.reply_to) == (OutboxState.PENDING, 0, "p9")
    with pytest.raises(IdempotencyConflict):
        await ledger.enqueue_reply("tg", "chat", "other text", key="r1")
    assert [r.text for r in await ledger.list_replies()] == ["hello"]
    events = [e for e in await ledger.events_since(0) if e.outbox_id == a.id]
    assert [e.kind for e in events] == ["reply_queued", "idempotency_conflict"]


async def test_claim_reserves_the_attempt_before_the_call(ledger: Ledger, tmp_path: Path) -> None:
    item = await ledger.enqueue_reply("tg", "chat", "hi", key="r1")
    claimed = await ledger.claim_due_reply()
    assert claimed is not None and claimed.id == item.id
    assert (claimed.state, claimed.attempts) == (OutboxState.SENDING, 1)
    # committed: another connection sees the reservation, and nobody can claim it again
    async with await Ledger.open(tmp_path / "ledger.db") as other:
        seen = await other.get_reply(item.id)
        assert (seen.state, seen.attempts) == (OutboxState.SENDING, 1)
        assert await other.claim_due_reply() is None
    assert await ledger.claim_due_reply() is None
    sent = await ledger.mark_sent(item.id, "platform-77")
    assert (sent.state, sent.platform_message_id) == (OutboxState.SENT, "platform-77")
    with pytest.raises(IllegalTransition):
        await ledger.mark_sent(item.id, "again")


async def test_claim_order_schedule_and_channel_filter(ledger: Ledger, clock: FakeClock) -> None:
    later = await ledger.enqueue_reply("tg", "c", "later", key="1", scheduled_at=clock.t + 30)
    first = await ledger.enqueue_reply("web", "c", "first", key="2")
    second = await ledger.enqueue_reply("tg", "c", "second", key="3")
    assert await ledger.next_reply_due_at() == clock.t
    peek = await ledger.next_due_reply()
    assert peek is not None and peek.id == first.id and peek.state == OutboxState.PENDING
    only_tg = await ledger.claim_due_reply(channels=["tg"])
    assert only_tg is not None and only_tg.id == second.id
    assert (await ledger.claim_due_reply()) == await ledger.get_reply(first.id)
    assert await ledger.claim_due_reply() is None  # "later" is not due yet
    assert await ledger.next_reply_due_at() == clock.t + 30
    clock.advance(30)
    due = await ledger.claim_due_reply()
    assert due is not None and due.id == later.id


def test_backoff_schedule_and_cap() -> None:
    exact = [backoff_delay(n, rng=lambda: 0.5) for n in range(1, 8)]
    assert exact == [5.0, 25.0, 120.0, 600.0, 600.0, 600.0, 600.0]
    assert backoff_delay(0, rng=lambda: 0.5) == 5.0
    assert backoff_delay(1, rng=lambda: 0.0) == pytest.approx(4.0)
    assert backoff_delay(4, rng=lambda: 1.0) == pytest.approx(720.0)
    assert backoff_delay(2, schedule=(1.0, 2.0), jitter=0.0) == 2.0


@given(attempts=st.integers(min_value=-3, max_value=50), seed=st.integers(0, 2**32))
def test_backoff_jitter_stays_within_twenty_percent(attempts: int, seed: int) -> None:
    base = DEFAULT_BACKOFF[min(max(attempts, 1), len(DEFAULT_BACKOFF)) - 1]
    delay = backoff_delay(attempts, rng=random.Random(seed).random)
    assert 0.8 * base <= delay <= 1.2 * base


def test_jitter_actually_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {round(backoff_delay(2, rng=rng.random), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) < 23 and max(delays) > 27


async def test_retry_waits_its_delay_then_counts_another_attempt(
    ledger: Ledger, clock: FakeClock
) -> None:
    item = await ledger.enqueue_reply("tg", "c", "hi", key="r")
    claimed = await ledger.claim_due_reply()
    assert claimed is not None
    retry = await ledger.mark_retry(item.id, "HTTP 502", backoff_delay(1, rng=lambda: 0.5))
    assert (retry.state, retry.scheduled_at, retry.last_error) == (
        "pending",
        clock.t + 5,
        "HTTP 502",
    )
    clock.advance(4.9)
    assert await ledger.claim_due_reply() is None
    clock.advance(0.2)
    again = await ledger.claim_due_reply()
    assert again is not None and (again.state, again.attempts) == ("sending", 2)
    failed = await ledger.mark_failed(item.id, "HTTP 403 forbidden")
    assert (failed.state, failed.last_error, failed.attempts) == ("failed", "HTTP 403 forbidden", 2)
    clock.advance(10_000)
    assert await ledger.claim_due_reply() is None  # failed is not retried by itself
    with pytest.raises(IllegalTransition):
        await ledger.mark_retry(item.id, "x", 1)  # only a reserved attempt can be retried
    assert (await ledger.retry_reply(item.id)).state == OutboxState.PENDING
    resent = await ledger.claim_due_reply()
    assert resent is not None and resent.attempts == 3
    trail = [(e.from_state, e.to_state) for e in await ledger.events_since(0) if e.kind == "outbox"]
    assert trail == [
        ("pending", "sending"),
        ("sending", "pending"),
        ("pending", "sending"),
        ("sending", "failed"),
        ("failed", "pending"),
        ("pending", "sending"),
    ]


async def test_replies_expire_after_their_time_to_live(ledger: Ledger, clock: FakeClock) -> None:
    in_flight = await ledger.enqueue_reply("tg", "c", "in flight", key="a", ttl=60)
    stale = await ledger.enqueue_reply("tg", "c", "stale", key="b", ttl=60)
    fresh = await ledger.enqueue_reply("tg", "c", "fresh", key="c", ttl=3600)
    first = await ledger.claim_due_reply()
    assert first is not None and first.id == in_flight.id
    clock.advance(61)
    # an expired row is never claimed, even before expire_replies has run
    nxt = await ledger.claim_due_reply()
    assert nxt is not None and nxt.id == fresh.id
    assert await ledger.expire_replies() == 1
    assert (await ledger.get_reply(stale.id)).state == OutboxState.EXPIRED
    assert (await ledger.get_reply(in_flight.id)).state == OutboxState.SENDING  # not pending
    assert await ledger.expire_replies() == 0
    assert await ledger.list_replies(state="expired") == [await ledger.get_reply(stale.id)]
    expired = [e for e in await ledger.events_since(0) if e.to_state == "expired"]
    assert [(e.outbox_id, e.detail) for e in expired] == [(stale.id, "time to live ran out")]


async def test_a_crash_while_sending_leaves_unknown_never_resent(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "l.db"
    first = await Ledger.open(path, clock=clock)
    a = await first.enqueue_reply("tg", "c", "maybe delivered", key="a")
    b = await first.enqueue_reply("tg", "c", "not yet tried", key="b")
    claimed = await first.claim_due_reply()
    assert claimed is not None and claimed.id == a.id
    await first.close()  # the bridge "dies" between reserving and recording the outcome

    async with await Ledger.open(path, clock=clock) as restarted:
        recovered = await restarted.recover_sending()
        assert [(r.id, r.state) for r in recovered] == [(a.id, OutboxState.UNKNOWN)]
        assert await restarted.recover_sending() == []
        clock.advance(3600)
        nxt = await restarted.claim_due_reply()
        assert nxt is not None and nxt.id == b.id
        assert await restarted.claim_due_reply() is None  # the unknown row is not offered
        assert await restarted.next_due_reply() is None
        with pytest.raises(IllegalTransition):
            await restarted.reserve_send(a.id)
        unknown = await restarted.get_reply(a.id)
        assert (unknown.state, unknown.attempts) == (OutboxState.UNKNOWN, 1)
        detail = [e.detail for e in await restarted.events_since(0) if e.to_state == "unknown"]
        assert detail == ["the bridge stopped while sending; not resent blindly"]
        # a reconcile proved it never arrived: resend on purpose
        await restarted.retry_reply(a.id, actor="reconcile")
        again = await restarted.claim_due_reply()
        assert again is not None and (again.id, again.attempts) == (a.id, 2)


async def test_reserve_send_and_mark_unknown(ledger: Ledger) -> None:
    item = await ledger.enqueue_reply("tg", "c", "x", key="k")
    reserved = await ledger.reserve_send(item.id)
    assert (reserved.state, reserved.attempts) == (OutboxState.SENDING, 1)
    with pytest.raises(IllegalTransition):
        await ledger.reserve_send(item.id)  # a second relay cannot reserve it too
    unknown = await ledger.mark_unknown(item.id, "timeout after the request left")
    assert unknown.state == OutboxState.UNKNOWN
    assert (await ledger.mark_sent(item.id, "found-by-reconcile")).state == OutboxState.SENT
    with pytest.raises(NotFound):
        await ledger.reserve_send(12345)


async def test_completion_writes_the_reply_ahead_in_the_same_transaction(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "chat", "u", "question", key="p1")).message.id
    m = await ledger.claim_next("default", "h", 60)
    assert m is not None
    await ledger.complete(mid, m.fence, "answer")
    reply = await ledger.claim_due_reply()
    assert reply is not None
    assert (reply.message_id, reply.text, reply.reply_to, reply.conversation) == (
        mid,
        "answer",
        "p1",
        "chat",
    )
    events = await ledger.events_for(mid)
    assert [e.kind for e in events][-2:] == ["reply_queued", "outbox"]
    # no reply queued when asked not to, or when the reply is empty
    for text, queue in (("", True), ("silent", False)):
        other = (await ledger.ingest("tg", f"c-{text}", "u", "q")).message.id
        m2 = await ledger.claim_next("default", "h", 60)
        assert m2 is not None and m2.id == other
        await ledger.complete(other, m2.fence, text, queue_reply=queue)
        assert await ledger.list_replies(message_id=other) == []
