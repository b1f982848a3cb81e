"""Replies at most once: a send whose outcome is unknown is never resent blindly.

The fake Bot API processes the ``sendMessage`` (the message is in the chat) and then loses
the answer: it stalls past the client's timeout, or resets the TCP connection. The real relay
must leave the row ``unknown`` with the user holding exactly one copy. Errors that prove
Telegram never processed the request (connection refused, 429) stay retryable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import DeliveryError, ErrorClass
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until
from telegram_helpers import CHAT

from agentbridge_telegram import TelegramChannel
from agentbridge_telegram.testing import FakeBotApi

FAST = OutboxConfig(backoff=(0.05,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)
SETTLED = (OutboxState.SENT, OutboxState.UNKNOWN, OutboxState.FAILED)


@contextlib.asynccontextmanager
async def relay_for(ledger: Ledger, channel: TelegramChannel) -> AsyncIterator[OutboxRelay]:
    """The real outbox relay, woken by the ledger like the supervisor wakes it."""
    relay = OutboxRelay(ledger, {"telegram": channel}, FAST)
    unsubscribe = ledger.on_change(lambda kind, _id: relay.poke() if kind == "outbox" else None)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        unsubscribe()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settled(ledger: Ledger, outbox_id: int) -> OutboxState:
    async def check() -> OutboxState | None:
        state = (await ledger.get_reply(outbox_id)).state
        return state if state in SETTLED else None

    return await async_wait_until(check, timeout=10, what="reply settled")


@pytest.mark.parametrize("fault", ["stall", "reset"])
async def test_answer_lost_after_send_reaches_the_user_once(
    fake: FakeBotApi, ledger: Ledger, start_channel, fault: str
) -> None:
    """The reported double send: a timeout after Telegram posted the message was resent."""
    channel = await start_channel(request_timeout=0.5)
    fake.fail_next(fault)
    async with relay_for(ledger, channel):
        item = await ledger.enqueue_reply("telegram", str(CHAT), "the answer", key="r-once")
        state = await settled(ledger, item.id)
        assert [s.visible for s in fake.sent] == ["the answer"], "the user got the reply twice"
        assert state is OutboxState.UNKNOWN
        # the relay keeps running and delivers other replies, never this one again
        other = await ledger.enqueue_reply("telegram", str(CHAT), "next one", key="r-next")
        assert await settled(ledger, other.id) is OutboxState.SENT
    row = await ledger.get_reply(item.id)
    assert row.state is OutboxState.UNKNOWN and row.attempts == 1
    assert [s.visible for s in fake.sent] == ["the answer", "next one"]


async def test_unknown_part_of_a_long_reply_is_not_resent(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    """Part 2 of 3 is lost after it was posted: parts 1 and 2 in the chat once, then stop."""
    channel = await start_channel(parse_mode="none", request_timeout=0.5)
    text = "a" * 4000 + "\n" + "b" * 4000 + "\n" + "c" * 100
    fake.fail_next("ok", "reset")
    async with relay_for(ledger, channel):
        item = await ledger.enqueue_reply("telegram", str(CHAT), text, key="r-long")
        assert await settled(ledger, item.id) is OutboxState.UNKNOWN
    assert [s.text[0] for s in fake.sent] == ["a", "b"]
    row = await ledger.get_reply(item.id)
    assert row.parts_sent == 1  # a human's retry resumes at the part in doubt


async def test_refused_connection_is_retried_and_sent_once(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    """Connection refused proves nothing was sent: retried until Telegram is back."""
    channel = await start_channel(request_timeout=0.5)
    await fake.stop()
    async with relay_for(ledger, channel):
        item = await ledger.enqueue_reply("telegram", str(CHAT), "patience", key="r-refused")

        async def retrying() -> bool:
            row = await ledger.get_reply(item.id)
            return row.state is OutboxState.PENDING and row.attempts >= 1

        await async_wait_until(retrying, timeout=10, what="a retry scheduled")
        await fake.start()  # same port
        assert await settled(ledger, item.id) is OutboxState.SENT
    assert [s.visible for s in fake.sent] == ["patience"]


async def test_rate_limit_is_retried_and_sent_once(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    """429 is Telegram refusing the request (documented): retried after ``retry_after``."""
    channel = await start_channel()
    fake.fail_next("429_now")
    async with relay_for(ledger, channel):
        item = await ledger.enqueue_reply("telegram", str(CHAT), "flood", key="r-429")
        assert await settled(ledger, item.id) is OutboxState.SENT
    assert [s.visible for s in fake.sent] == ["flood"]
    assert (await ledger.get_reply(item.id)).attempts == 2


@pytest.mark.parametrize("fault", ["stall", "reset", "500", "502"])
async def test_deliver_classifies_a_lost_answer_as_unknown(
    fake: FakeBotApi, ledger: Ledger, start_channel, fault: str
) -> None:
    channel = await start_channel(request_timeout=0.5)
    fake.fail_next(fault)
    item = await ledger.enqueue_reply("telegram", str(CHAT), "maybe", key="r-maybe")
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.UNKNOWN
    assert fake.token not in str(caught.value)
