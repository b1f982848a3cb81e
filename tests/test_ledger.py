"""The ledger on real SQLite files: idempotency, fencing, claims, FIFO, recovery, migrations.

Every test opens a real file in ``tmp_path``; nothing of ours is mocked. A fake clock is
injected where time matters (leases, retention) so the tests never sleep.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentbridge.ledger.migrations import SCHEMA_VERSION, SchemaTooNew
from agentbridge.ledger.sqlite import (
    IdempotencyConflict,
    IllegalTransition,
    Ledger,
    NewMessage,
    NotFound,
    StaleLease,
)
from agentbridge.states import MessageState


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1_000_000.0) -> None:
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


async def kinds(led: Ledger, message_id: int) -> list[str]:
    return [e.kind for e in await led.events_for(message_id)]


# ---------------------------------------------------------------------- ingest


async def test_same_key_same_text_returns_the_same_message(ledger: Ledger) -> None:
    first = await ledger.ingest("tg", "chat1", "alice", "hello", key="p-1")
    again = await ledger.ingest("tg", "chat1", "alice", "hello", key="p-1")
    assert first.created and not again.created
    assert again.message.id == first.message.id
    assert len(await ledger.list_messages()) == 1
    assert await kinds(ledger, first.message.id) == ["transition"]  # one ingest event, not two


async def test_same_key_other_text_is_a_recorded_conflict(ledger: Ledger) -> None:
    first = await ledger.ingest("tg", "chat1", "alice", "hello", key="p-1")
    with pytest.raises(IdempotencyConflict, match="p-1"):
        await ledger.ingest("tg", "chat1", "alice", "HELLO?", key="p-1")
    stored = await ledger.get(first.message.id)
    assert stored.text == "hello"
    events = await ledger.events_for(first.message.id)
    conflict = [e for e in events if e.kind == "idempotency_conflict"]
    assert len(conflict) == 1 and "p-1" in conflict[0].detail


async def test_keys_are_per_channel_and_keyless_messages_never_dedupe(ledger: Ledger) -> None:
    a = await ledger.ingest("tg", "c", "u", "x", key="k")
    b = await ledger.ingest("web", "c", "u", "x", key="k")
    c = await ledger.ingest("tg", "c", "u", "x")
    d = await ledger.ingest("tg", "c", "u", "x")
    assert a.created and b.created and c.created and d.created
    assert len({a.message.id, b.message.id, c.message.id, d.message.id}) == 4


async def test_ingest_stores_every_field(ledger: Ledger, clock: FakeClock) -> None:
    res = await ledger.ingest(
        "tg", "chat", "bob", "héllo \u2603", key="9", agent="coder", priority=2, meta={"a": [1]}
    )
    m = await ledger.get(res.message.id)
    assert res.message == m  # what ingest returns is exactly what a read returns
    assert (m.channel, m.conversation, m.sender, m.platform_id) == ("tg", "chat", "bob", "9")
    assert (m.text, m.agent, m.priority, m.meta) == ("héllo \u2603", "coder", 2, {"a": [1]})
    assert (m.state, m.attempt, m.fence, m.created_at) == (MessageState.QUEUED, 1, 0, clock.t)
    assert await ledger.find("tg", "9") == m
    assert await ledger.find("tg", "nope") is None


async def test_concurrent_ingests_share_commits_and_all_land(
    ledger: Ledger, clock: FakeClock
) -> None:
    ticks = 0

    def ticking() -> float:  # the ledger reads the clock once per transaction
        nonlocal ticks
        ticks += 1
        return clock.t + ticks

    ledger.clock = ticking
    results = await asyncio.gather(
        *(ledger.ingest("tg", f"c{i % 7}", "u", f"text {i}", key=f"k{i}") for i in range(300)),
        # the same key several times inside one group commit: one row
        *(ledger.ingest("tg", "c", "u", "dup", key="dup") for _ in range(5)),
    )
    ids = [r.message.id for r in results[:300]]
    assert len(set(ids)) == 300 and all(r.created for r in results[:300])
    dups = results[300:]
    assert len({r.message.id for r in dups}) == 1
    assert sum(r.created for r in dups) == 1
    assert len(await ledger.list_messages(limit=10_000)) == 301
    transactions = {r.message.created_at for r in results}
    assert len(transactions) < 50, "concurrent ingests should share group commits"


async def test_a_bad_ingest_fails_only_its_own_caller(ledger: Ledger) -> None:
    good = [ledger.ingest("tg", "c", "u", f"t{i}", key=f"g{i}") for i in range(20)]
    bad = ledger.ingest("tg", "c", "u", "bad", key="bad", meta={"x": object()})
    conflict_seed = await ledger.ingest("tg", "c", "u", "original", key="seed")
    conflicting = ledger.ingest("tg", "c", "u", "changed", key="seed")
    results = await asyncio.gather(*good, bad, conflicting, return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results[:20])
    assert isinstance(results[20], TypeError)
    assert isinstance(results[21], IdempotencyConflict)
    assert await ledger.find("tg", "bad") is None
    assert (await ledger.get(conflict_seed.message.id)).text == "original"
    assert len(await ledger.list_messages()) == 21


async def test_an_unstorable_text_in_a_group_commit_fails_only_its_caller(ledger: Ledger) -> None:
    # A value SQLite cannot bind fails inside the shared transaction, so the batch is retried
    # one ingest at a time. (A lone surrogate no longer does: ingest replaces it with U+FFFD.)
    calls = [ledger.ingest("tg", "c", "u", f"t{i}", key=f"g{i}") for i in range(10)]
    unbindable: Any = object()
    calls.insert(5, ledger.ingest("tg", "c", "u", "broken", key="broken", priority=unbindable))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[5], sqlite3.ProgrammingError)
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert len(stored) == 10 and all(r.created for r in stored)
    assert await ledger.find("tg", "broken") is None
    assert [m.text for m in await ledger.list_messages()] == [f"t{i}" for i in range(10)]


async def test_ingest_many_is_all_or_nothing_and_records_a_conflict(ledger: Ledger) -> None:
    seed = await ledger.ingest("tg", "c", "u", "one", key="1")
    batch = await ledger.ingest_many(
        [
            NewMessage("tg", "c", "u", "one", key="1"),
            NewMessage("tg", "c", "u", "two", key="2", priority=3, meta={"t": (1, "x")}),
        ]
    )
    assert [r.created for r in batch] == [False, True]
    assert [r.message for r in batch] == [await ledger.get(r.message.id) for r in batch]
    assert batch[1].message.meta == {"t": [1, "x"]}
    assert batch[0].message.id == seed.message.id
    with pytest.raises(IdempotencyConflict):
        await ledger.ingest_many(
            [NewMessage("tg", "c", "u", "three", key="3"), NewMessage("tg", "c", "u", "X", key="1")]
        )
    assert await ledger.find("tg", "3") is None  # rolled back with the conflict
    assert "idempotency_conflict" in await kinds(ledger, seed.message.id)


async def test_close_waits_for_queued_ingests(tmp_path: Path) -> None:
    led = await Ledger.open(tmp_path / "l.db")
    tasks = [
        asyncio.create_task(led.ingest("tg", "c", "u", f"m{i}", key=str(i))) for i in range(50)
    ]
    await asyncio.sleep(0)  # let them queue behind the first flush
    await led.close()
    acked = [t.result().message.id for t in tasks]
    async with await Ledger.open(tmp_path / "l.db") as again:
        assert [m.id for m in await again.list_messages()] == sorted(acked)


async def test_listeners_hear_committed_changes(ledger: Ledger) -> None:
    heard: list[tuple[str, int]] = []
    unsubscribe = ledger.on_change(lambda kind, ident: heard.append((kind, ident)))

    def broken(kind: str, ident: int) -> None:
        raise RuntimeError("a broken listener must not break the ledger")

    ledger.on_change(broken)
    res = await ledger.ingest("tg", "c", "u", "x", key="1")
    assert heard == [("message", res.message.id)]
    unsubscribe()
    unsubscribe()
    await ledger.ingest("tg", "c", "u", "y", key="2")
    assert len(heard) == 1


async def test_files_are_private(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "sub" / "l.db") as led:
        await led.ingest("tg", "c", "u", "secret")
        for name in ("l.db", "l.db-wal"):
            assert stat.S_IMODE(os.stat(tmp_path / "sub" / name).st_mode) == 0o600


# ---------------------------------------------------------------------- fencing


async def test_a_stale_fence_cannot_complete_heartbeat_or_requeue(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x", key="1")).message.id
    old = await ledger.claim_next("default", "host-a", 60)
    assert old is not None and old.id == mid and old.fence == 1
    await ledger.requeue_victim(mid, old.fence, "host-a died")
    new = await ledger.claim_next("default", "host-b", 60)
    assert new is not None and new.fence > old.fence and new.attempt == 2

    for attempt in (
        ledger.complete(mid, old.fence, "late reply"),
        ledger.heartbeat(mid, old.fence, 60),
        ledger.requeue_victim(mid, old.fence, "again"),
        ledger.mark_submitted(mid, old.fence),
        ledger.mark_accepted(mid, old.fence),
        ledger.fail(mid, old.fence, "x"),
    ):
        with pytest.raises(StaleLease):
            await attempt
    current = await ledger.get(mid)
    assert (current.state, current.fence, current.lease_owner) == ("claimed", new.fence, "host-b")
    assert current.reply is None
    refused = [e for e in await ledger.events_for(mid) if e.kind == "refused"]
    assert len(refused) == 6
    assert all(f"fence {old.fence} is stale" in e.detail for e in refused)
    assert await ledger.list_replies() == []  # the stale completion queued no reply


async def test_the_current_fence_walks_the_happy_path(ledger: Ledger, clock: FakeClock) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x", key="k1")).message.id
    m = await ledger.claim_next("default", "host", 60)
    assert m is not None and m.lease_expires_at == clock.t + 60
    clock.advance(30)
    hb = await ledger.heartbeat(mid, m.fence, 120)
    assert hb.lease_expires_at == clock.t + 120 and hb.heartbeat_at == clock.t
    assert (await ledger.mark_submitted(mid, m.fence)).state == "submitted"
    assert (await ledger.mark_accepted(mid, m.fence)).state == "accepted"
    # duplicate evidence (hook and transcript both report) is a no-op, not an error
    assert (await ledger.mark_accepted(mid, m.fence)).state == "accepted"
    assert (await ledger.mark_submitted(mid, m.fence)).state == "accepted"
    done = await ledger.complete(mid, m.fence, "the answer")
    assert (done.state, done.reply, done.lease_owner) == ("completed", "the answer", None)
    assert (await ledger.complete(mid, m.fence, "the answer")).state == "completed"
    replies = await ledger.list_replies(message_id=mid)
    assert [(r.idem_key, r.text, r.reply_to) for r in replies] == [
        (f"reply:{mid}", "the answer", "k1")
    ]
    trail = [
        (e.from_state, e.to_state) for e in await ledger.events_for(mid) if e.kind == "transition"
    ]
    assert trail == [
        (None, "queued"),
        ("queued", "claimed"),
        ("claimed", "submitted"),
        ("submitted", "accepted"),
        ("accepted", "completed"),
    ]
    # the lease ended: its fence can no longer heartbeat, fail or requeue
    with pytest.raises(StaleLease, match="holds no lease"):
        await ledger.heartbeat(mid, m.fence, 60)
    with pytest.raises(IllegalTransition):
        await ledger.fail(mid, m.fence, "too late")
    with pytest.raises(IllegalTransition):
        await ledger.requeue_victim(mid, m.fence, "too late")
    assert [e.kind for e in await ledger.events_for(mid)].count("refused") == 3


async def test_fenced_moves_need_a_lease(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x")).message.id
    with pytest.raises(IllegalTransition):
        await ledger.fail(mid, 0, "nobody holds this message")
    with pytest.raises(IllegalTransition):
        await ledger.complete(mid, 0, "r")
    assert (await ledger.get(mid)).state == "queued"
    assert (await kinds(ledger, mid)).count("refused") == 2
    with pytest.raises(NotFound):
        await ledger.complete(9999, 1, "r")


async def test_fail_is_terminal_with_a_reason(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x")).message.id
    m = await ledger.claim_next("default", "h", 60)
    assert m is not None
    failed = await ledger.fail(mid, m.fence, "agent refused")
    assert (failed.state, failed.reason, failed.lease_owner) == ("failed", "agent refused", None)
    assert await ledger.list_replies() == []


# ---------------------------------------------------------------------- claiming


async def test_two_connections_racing_never_claim_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    a, b = await Ledger.open(path), await Ledger.open(path)
    try:
        for round_ in range(40):
            for i in range(3):
                await a.ingest("tg", f"r{round_}c{i}", "u", "x")
            got = await asyncio.gather(
                *(
                    led.claim_next("default", f"o{j}", 60, exclusive=False)
                    for j, led in enumerate([a, b, a, b])
                )
            )
            ids = [m.id for m in got if m is not None]
            assert len(ids) == 3 and len(set(ids)) == 3, got
            for m in got:
                if m is not None:
                    await (a if m.id % 2 else b).complete(m.id, m.fence, "ok", queue_reply=False)
        assert await a.list_messages(state="queued") == []
        claims = {m.id: m.fence for m in await b.list_messages(limit=1000)}
        assert set(claims.values()) == {1}  # each claimed exactly once
    finally:
        await a.close()
        await b.close()


CLAIMER = textwrap.dedent(
    """
    import asyncio, sys
    from agentbridge.ledger.sqlite import Ledger

    async def main() -> None:
        led = await Ledger.open(sys.argv[1])
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        while True:
            m = await led.claim_next("default", sys.argv[2], 60, exclusive=False)
            if m is None:
                if not await led.list_messages(state="queued", limit=1):
                    break
                continue
            print(m.id, flush=True)
            await led.complete(m.id, m.fence, "done", queue_reply=False)
            # an agent's turn happens between transactions; without a gap, SQLite's busy
            # handler lets one process starve the other and nothing would be raced
            await asyncio.sleep(0.001)
        await led.close()

    asyncio.run(main())
    """
)


async def test_two_processes_claiming_each_message_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as led:
        await led.ingest_many([NewMessage("tg", f"c{i}", "u", f"m{i}") for i in range(300)])
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - two real processes race; the loop has nothing to do
            [sys.executable, "-c", CLAIMER, str(path), f"proc{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    claimed = [int(x) for out in outs for x in out]
    assert len(claimed) == len(set(claimed)) == 300
    assert all(outs), "both processes should have won some claims"
    async with await Ledger.open(path) as led:
        assert {m.state for m in await led.list_messages()} == {MessageState.COMPLETED}


async def test_fifo_per_conversation_with_one_in_flight(ledger: Ledger) -> None:
    ids = {}
    for name in ("a1", "b1", "a2", "a3", "b2"):
        ids[name] = (await ledger.ingest("tg", name[0], "u", name)).message.id

    async def claim() -> str | None:
        m = await ledger.claim_next("default", "h", 60, exclusive=False)
        return m.text if m else None

    assert [await claim(), await claim(), await claim()] == ["a1", "b1", None]
    a1 = await ledger.get(ids["a1"])
    await ledger.complete(a1.id, a1.fence, "r")
    assert await claim() == "a2"
    assert await claim() is None
    for name in ("b1", "a2"):
        m = await ledger.get(ids[name])
        await ledger.complete(m.id, m.fence, "r")
    assert [await claim(), await claim()] == ["a3", "b2"]


async def test_exclusive_agent_has_one_in_flight_and_agents_are_separate(ledger: Ledger) -> None:
    await ledger.ingest("tg", "c1", "u", "x1", agent="one")
    await ledger.ingest("tg", "c2", "u", "x2", agent="one")
    await ledger.ingest("tg", "c3", "u", "y1", agent="two")
    first = await ledger.claim_next("one", "h1", 60)
    assert first is not None and first.text == "x1"
    assert await ledger.claim_next("one", "h1", 60) is None  # busy agent
    other = await ledger.claim_next("two", "h2", 60)
    assert other is not None and other.text == "y1"
    await ledger.complete(first.id, first.fence, "r")
    second = await ledger.claim_next("one", "h1", 60)
    assert second is not None and second.text == "x2"
    assert await ledger.claim_next("nobody", "h", 60) is None


async def test_priority_lane_goes_first(ledger: Ledger) -> None:
    await ledger.ingest("tg", "c1", "u", "normal 1")
    await ledger.ingest("tg", "c2", "u", "normal 2")
    await ledger.ingest("tg", "c3", "u", "urgent", priority=10)
    await ledger.ingest("tg", "c4", "u", "less urgent", priority=5)
    order = []
    while (m := await ledger.claim_next("default", "h", 60, exclusive=False)) is not None:
        order.append(m.text)
    assert order == ["urgent", "less urgent", "normal 1", "normal 2"]


# ---------------------------------------------------------------------- victims and recovery


async def test_victims_by_owner_agent_and_expiry_in_original_order(
    ledger: Ledger, clock: FakeClock
) -> None:
    for i in range(6):
        await ledger.ingest("tg", f"c{i}", "u", f"m{i}", agent="A" if i < 4 else "B")
    leases = {}
    for owner, agent, secs in (
        ("h1", "A", 10),
        ("h2", "A", 100),
        ("h1", "A", 100),
        ("h3", "B", 10),
    ):
        m = await ledger.claim_next(agent, owner, secs, exclusive=False)
        assert m is not None
        leases[m.text] = m
    assert [v.text for v in await ledger.victims(owner="h1")] == ["m0", "m2"]
    assert [v.text for v in await ledger.victims(agent="A")] == ["m0", "m1", "m2"]
    assert await ledger.victims(expired_before=clock.t) == []
    clock.advance(50)
    assert [v.text for v in await ledger.victims(expired_before=clock.t)] == ["m0", "m4"]
    assert [v.text for v in await ledger.victims(owner="h1", expired_before=clock.t)] == ["m0"]
    assert [v.text for v in await ledger.victims()] == ["m0", "m1", "m2", "m4"]


async def test_requeued_victim_goes_back_to_the_head_with_attempt_plus_one(ledger: Ledger) -> None:
    first = (await ledger.ingest("tg", "c", "u", "first")).message.id
    await ledger.ingest("tg", "c", "u", "second")
    await ledger.ingest("tg", "other", "u", "other")
    m = await ledger.claim_next("default", "h", 60)
    assert m is not None and m.id == first
    await ledger.mark_submitted(m.id, m.fence)
    back = await ledger.requeue_victim(m.id, m.fence, "session died")
    assert (back.state, back.attempt, back.fence, back.lease_owner) == (
        "queued",
        2,
        m.fence + 1,
        None,
    )
    again = await ledger.claim_next("default", "h2", 60)
    assert again is not None and (again.id, again.attempt) == (first, 2)
    replay = [e for e in await ledger.events_for(first) if e.to_state == "queued"][-1]
    assert (replay.from_state, replay.attempt) == ("submitted", 2)
    assert "session died" in replay.detail


async def test_release_gives_back_an_undelivered_claim_without_an_attempt(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x")).message.id
    await ledger.ingest("tg", "c", "u", "y")
    m = await ledger.claim_next("default", "h", 60)
    assert m is not None and m.id == mid
    back = await ledger.release(mid, m.fence, "input box not empty")
    assert (back.state, back.attempt, back.fence, back.lease_owner) == (
        "queued",
        1,
        m.fence + 1,
        None,
    )
    with pytest.raises(StaleLease):
        await ledger.release(mid, m.fence, "twice")
    again = await ledger.claim_next("default", "h", 60)
    assert again is not None and (again.id, again.attempt) == (mid, 1)  # still the head
    await ledger.mark_submitted(mid, again.fence)
    with pytest.raises(IllegalTransition):  # the agent may have it now: replay, not release
        await ledger.release(mid, again.fence, "too late")
    assert (await ledger.get(mid)).state == "submitted"


async def test_attempt_limit_quarantines_with_a_readable_reason(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "poison")).message.id
    await ledger.ingest("tg", "c", "u", "next")
    fences = []
    for _ in range(3):
        m = await ledger.claim_next("default", "h", 60)
        assert m is not None and m.id == mid
        fences.append(m.fence)
        result = await ledger.requeue_victim(mid, m.fence, "agent crashed")
    assert (result.state, result.attempt) == ("quarantined", 3)
    assert result.reason is not None
    assert "3 attempts" in result.reason and "agent crashed" in result.reason
    assert result.fence > fences[-1]  # the dead holder's fence is stale now
    with pytest.raises(StaleLease):
        await ledger.mark_accepted(mid, fences[-1])
    assert await ledger.stats() != {}
    # a human tries again: attempts start over
    back = await ledger.requeue_quarantined(mid)
    assert (back.state, back.attempt, back.reason) == ("queued", 1, None)
    with pytest.raises(IllegalTransition):
        await ledger.requeue_quarantined(mid)
    q = await ledger.quarantine(mid, "human stopped it")
    assert (q.state, q.reason) == ("quarantined", "human stopped it")
    dropped = await ledger.drop(mid)
    assert (dropped.state, dropped.reason) == ("failed", "dropped by a human")
    with pytest.raises(IllegalTransition):
        await ledger.drop(mid)
    assert "refused" in await kinds(ledger, mid)


async def test_max_attempts_is_configurable(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.db", max_attempts=1) as led:
        mid = (await led.ingest("tg", "c", "u", "x")).message.id
        m = await led.claim_next("default", "h", 60)
        assert m is not None
        assert (await led.requeue_victim(mid, m.fence, "boom")).state == "quarantined"


async def test_quarantining_an_in_flight_message_fences_out_its_holder(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x")).message.id
    m = await ledger.claim_next("default", "h", 60)
    assert m is not None
    await ledger.quarantine(mid, "cannot prove it is safe")
    with pytest.raises(StaleLease):
        await ledger.complete(mid, m.fence, "late")
    assert (await ledger.get(mid)).state == "quarantined"


# ---------------------------------------------------------------------- migrations, prune, stats


async def test_fresh_file_gets_the_current_schema_version(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.db"):
        pass
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    async with await Ledger.open(tmp_path / "l.db") as led:  # reopening migrates nothing
        assert await led.list_messages() == []


async def test_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as led:
        await led.ingest("tg", "c", "u", "keep me")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        await Ledger.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT text FROM messages").fetchall() == [("keep me",)]
    conn.close()


async def test_concurrent_first_opens_do_not_race_the_migration(tmp_path: Path) -> None:
    for round_ in range(10):
        path = tmp_path / f"fresh{round_}.db"
        ledgers = await asyncio.gather(*(Ledger.open(path) for _ in range(4)))
        for led in ledgers:
            await led.ingest("tg", "c", "u", "x")
            await led.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 4


async def test_synchronous_mode_is_validated(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "n.db", synchronous="normal") as led:
        assert (await led.ingest("tg", "c", "u", "x")).created
    with pytest.raises(Exception, match="synchronous"):
        await Ledger.open(tmp_path / "o.db", synchronous="off")


async def test_prune_deletes_only_old_terminal_rows(ledger: Ledger, clock: FakeClock) -> None:
    async def finish(text: str, reply_sent: bool) -> int:
        mid = (await ledger.ingest("tg", text, "u", text)).message.id
        m = await ledger.claim_next("default", "h", 60, exclusive=False)
        assert m is not None and m.id == mid
        await ledger.complete(mid, m.fence, f"re {text}")
        if reply_sent:
            item = await ledger.claim_due_reply()
            assert item is not None
            await ledger.mark_sent(item.id, "p1")
        return mid

    old_done = await finish("old", reply_sent=True)
    old_unsent = await finish("old-unsent", reply_sent=False)
    old_queued = (await ledger.ingest("tg", "q", "u", "old queued", agent="idle")).message.id
    clock.advance(10 * 86400)
    new_done = await finish("new", reply_sent=True)
    assert await ledger.prune(7 * 86400) == (1, 1)
    remaining = {m.id for m in await ledger.list_messages()}
    assert remaining == {old_unsent, old_queued, new_done}
    assert await ledger.events_for(old_done) == []
    assert await ledger.events_for(new_done) != []
    assert len(await ledger.list_replies()) == 2


async def test_stats_counts_per_agent_and_state(ledger: Ledger, clock: FakeClock) -> None:
    await ledger.ingest("tg", "c1", "u", "a", agent="A")
    clock.advance(5)
    await ledger.ingest("tg", "c2", "u", "b", agent="A")
    await ledger.ingest("tg", "c3", "u", "c", agent="B")
    m = await ledger.claim_next("B", "h", 10)
    assert m is not None
    clock.advance(20)
    s = await ledger.stats()
    assert s["agents"]["A"] == {
        "queued": 2,
        "in_flight": 0,
        "quarantined": 0,
        "stale": 0,
        "oldest_queued_age": 25.0,
    }
    assert s["agents"]["B"]["in_flight"] == 1 and s["agents"]["B"]["stale"] == 1
    assert s["messages"] == {"queued": 2, "claimed": 1}
    await ledger.complete(m.id, m.fence, "r")
    s = await ledger.stats()
    assert s["messages"] == {"queued": 2, "completed": 1} and s["outbox"] == {"pending": 1}


async def test_note_and_events_since(ledger: Ledger) -> None:
    mid = (await ledger.ingest("tg", "c", "u", "x")).message.id
    await ledger.note(mid, "web", "receipt", "shown to sender")
    events = await ledger.events_since(0)
    assert [e.kind for e in events] == ["transition", "receipt"]
    assert await ledger.events_since(events[-1].id) == []
    assert events[-1].to_json()["detail"] == "shown to sender"
