"""Replies at most once, at the relay: a send whose answer was lost is never resent blindly.

The channel here stands in for an outside platform: it records what was posted, can lose the
answer after posting (a timeout after the request left), and, for the reconciling variant,
can be asked what it holds. Everything else is the real relay and the real ledger file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import IllegalTransition, Ledger
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    Channel,
    ChannelContext,
    ChannelLimits,
    ErrorClass,
    Receipt,
    Reconciled,
    ReconcilingChannel,
)
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until

FAST = OutboxConfig(backoff=(0.02,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)


class Platform:
    """Posts messages; ``lose_answers`` posts then times out; ``lookup`` answers reconcile."""

    def __init__(self) -> None:
        self.posted: list[str] = []
        self.lose_answers = 0  # the next N posts happen, but their answers are lost
        self.lookup_down = False  # reconcile cannot reach the platform
        self.lookups = 0


class LossyChannel:
    """No ``classify_error`` opinion: the relay's built-in rules decide."""

    name = "lossy"
    limits = ChannelLimits(max_message_length=10)

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def start(self, ctx: ChannelContext) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, item: OutboxItem) -> str | None:
        self.platform.posted.append(item.text)
        if self.platform.lose_answers:
            self.platform.lose_answers -= 1
            raise TimeoutError("read timed out")  # what a client sees; the post happened
        return f"p{len(self.platform.posted)}"

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        return None

    async def receipt(self, receipt: Receipt) -> None: ...


class LookupChannel(LossyChannel):
    """A platform that can say what the bot posted (``reconcile``)."""

    name = "lookup"

    def __init__(self, platform: Platform, can_tell: bool = True) -> None:
        super().__init__(platform)
        self.can_tell = can_tell

    async def reconcile(self, item: OutboxItem) -> Reconciled:
        self.platform.lookups += 1
        if self.platform.lookup_down:
            raise ConnectionRefusedError("lookup unreachable")
        if not self.can_tell:
            return Reconciled(landed=None)
        if item.text in self.platform.posted:
            return Reconciled(True, f"p{self.platform.posted.index(item.text) + 1}")
        return Reconciled(False)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "l.db") as led:
        yield led


@contextlib.asynccontextmanager
async def running(
    ledger: Ledger, channel: Channel, sent: list[int] | None = None
) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay(
        ledger,
        {channel.name: channel},
        FAST,
        on_sent=(lambda item: sent.append(item.id)) if sent is not None else None,
    )
    relay.reconcile_every = 0.05
    unsubscribe = ledger.on_change(lambda kind, _id: relay.poke() if kind == "outbox" else None)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        unsubscribe()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def reaches(ledger: Ledger, outbox_id: int, *states: OutboxState) -> OutboxItem:
    async def check() -> OutboxItem | None:
        row = await ledger.get_reply(outbox_id)
        return row if row.state in states else None

    return await async_wait_until(check, timeout=10, what=f"reply {outbox_id} in {states}")


async def test_a_lost_answer_is_unknown_and_never_resent(ledger: Ledger) -> None:
    platform = Platform()
    platform.lose_answers = 1
    async with running(ledger, LossyChannel(platform)):
        item = await ledger.enqueue_reply("lossy", "c", "hello", "k1")
        row = await reaches(ledger, item.id, OutboxState.UNKNOWN, OutboxState.SENT)
        assert row.state is OutboxState.UNKNOWN, "a lost answer was retried"
        assert "TimeoutError" in (row.last_error or "")
        later = await ledger.enqueue_reply("lossy", "c", "later", "k2")
        await reaches(ledger, later.id, OutboxState.SENT)  # the relay is not stuck
    assert platform.posted == ["hello", "later"]
    assert (await ledger.get_reply(item.id)).attempts == 1


async def test_a_human_decides_an_unknown_reply(ledger: Ledger) -> None:
    """``agentbridge outbox sent`` closes it; ``outbox retry`` sends it once more."""
    platform = Platform()
    platform.lose_answers = 2
    async with running(ledger, LossyChannel(platform)):
        seen = await ledger.enqueue_reply("lossy", "c", "seen", "k1")
        lost = await ledger.enqueue_reply("lossy", "c", "lost", "k2")
        await reaches(ledger, seen.id, OutboxState.UNKNOWN)
        await reaches(ledger, lost.id, OutboxState.UNKNOWN)
        assert (await ledger.mark_landed(seen.id)).state is OutboxState.SENT
        await ledger.retry_reply(lost.id)
        await reaches(ledger, lost.id, OutboxState.SENT)
    assert platform.posted == ["seen", "lost", "lost"]  # the human chose to send it again
    with pytest.raises(IllegalTransition):
        await ledger.mark_landed(lost.id)  # only an unknown reply can be declared arrived


async def test_reconcile_finds_the_reply_landed(ledger: Ledger) -> None:
    platform = Platform()
    platform.lose_answers = 1
    sent: list[int] = []
    channel = LookupChannel(platform)
    assert isinstance(channel, ReconcilingChannel)
    async with running(ledger, channel, sent):
        item = await ledger.enqueue_reply("lookup", "c", "hello", "k1")
        row = await reaches(ledger, item.id, OutboxState.SENT)
    assert platform.posted == ["hello"]
    assert row.platform_message_id == "p1" and sent == [item.id]


async def test_reconcile_proves_it_never_arrived_so_it_is_sent_once(ledger: Ledger) -> None:
    platform = Platform()
    channel = LookupChannel(platform)
    item = await ledger.enqueue_reply("lookup", "c", "hello", "k1")
    await ledger.claim_due_reply()  # the bridge died while sending, before the post
    async with running(ledger, channel):
        await reaches(ledger, item.id, OutboxState.SENT)
    assert platform.posted == ["hello"] and platform.lookups == 1


async def test_reconcile_that_cannot_tell_leaves_it_to_a_human(ledger: Ledger) -> None:
    platform = Platform()
    platform.lose_answers = 1
    async with running(ledger, LookupChannel(platform, can_tell=False)) as relay:
        item = await ledger.enqueue_reply("lookup", "c", "hello", "k1")
        await reaches(ledger, item.id, OutboxState.UNKNOWN)
        later = await ledger.enqueue_reply("lookup", "c", "later", "k2")
        await reaches(ledger, later.id, OutboxState.SENT)
        assert not relay._in_doubt  # "cannot tell" is an answer: not asked again
    assert platform.posted == ["hello", "later"] and platform.lookups == 1


async def test_reconcile_unreachable_is_asked_again(ledger: Ledger) -> None:
    platform = Platform()
    platform.lose_answers = 1
    platform.lookup_down = True
    async with running(ledger, LookupChannel(platform)):
        item = await ledger.enqueue_reply("lookup", "c", "hello", "k1")
        await reaches(ledger, item.id, OutboxState.UNKNOWN)

        async def asked_twice() -> bool:
            return platform.lookups >= 2

        await async_wait_until(asked_twice, timeout=10, what="a second lookup")
        assert (await ledger.get_reply(item.id)).state is OutboxState.UNKNOWN
        platform.lookup_down = False
        await reaches(ledger, item.id, OutboxState.SENT)
    assert platform.posted == ["hello"]


async def test_reconciled_part_of_a_long_reply_resumes_after_it(ledger: Ledger) -> None:
    """Part 2 of 3 is posted but its answer lost; the lookup finds it: on to part 3."""
    platform = Platform()
    channel = LookupChannel(platform)
    original = channel.deliver

    async def lose_part_two(item: OutboxItem) -> str | None:
        if item.parts_sent == 1 and item.text not in platform.posted:
            platform.lose_answers = 1
        return await original(item)

    channel.deliver = lose_part_two  # type: ignore[method-assign]
    async with running(ledger, channel):
        text = "aaaaaaaaa\nbbbbbbbbb\nccccccccc"
        item = await ledger.enqueue_reply("lookup", "c", text, "k1")
        row = await reaches(ledger, item.id, OutboxState.SENT)
    assert platform.posted == ["aaaaaaaaa", "bbbbbbbbb", "ccccccccc"]
    assert platform.lookups == 1 and row.parts_sent == 3
    assert row.platform_message_id == "p1"  # the reply's first message, for threading
