"""Replies out: error classes, at most once (unknown + reconcile), chunking, mrkdwn, receipts."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, Receipt
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until
from slack_helpers import DM

from agentbridge_slack.mrkdwn import to_mrkdwn

FAST = OutboxConfig(backoff=(0.05,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)


async def test_ratelimited_is_transient_with_retry_after(fake, ledger: Ledger, start_channel):
    channel = await start_channel()
    item = await ledger.enqueue_reply("slack", DM, "hi", key="r1")
    fake.fail_next("ratelimited")
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.TRANSIENT
    assert caught.value.retry_after == 1.0
    assert fake.posted == []
    assert await channel.deliver(item) == fake.posted[0]["ts"]


@pytest.mark.parametrize("code", ["channel_not_found", "not_in_channel", "invalid_auth"])
async def test_permanent_errors(fake, ledger: Ledger, start_channel, code: str) -> None:
    channel = await start_channel()
    item = await ledger.enqueue_reply("slack", DM, "hi", key="r1")
    fake.fail_next(code)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert code in str(caught.value) and "xoxb" not in str(caught.value)


@pytest.mark.parametrize("fault", ["stall", "reset", "500"])
async def test_answer_lost_is_unknown_and_reconciled(fake, ledger, start_channel, fault) -> None:
    """Slack posted the message, the answer was lost: never resent; reconcile finds it.

    The relay writes ``unknown`` *before* it reconciles (a crash in between must leave the row
    in doubt, never ``sending``), so ``unknown`` is a passing state here: the test waits for
    ``sent`` and reads the audit trail for the path taken (waiting for "sent or unknown" was
    the old flake — a poll landing between the two writes saw ``unknown``)."""
    channel = await start_channel(request_timeout=0.5)
    fake.stall_seconds = 2
    fake.fail_next(fault)
    relay = OutboxRelay(ledger, {"slack": channel}, FAST)
    task = asyncio.create_task(relay.run())
    try:
        item = await ledger.enqueue_reply("slack", DM, "the **answer**", key="r-once")
        relay.poke()

        async def sent() -> bool:
            return (await ledger.get_reply(item.id)).state is OutboxState.SENT

        await async_wait_until(sent, timeout=15, what="reply reconciled to sent")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    events = [e for e in await ledger.events_since(0) if e.outbox_id == item.id]
    trail = [(e.to_state, e.detail) for e in events]
    assert "unknown" in [state for state, _ in trail], trail
    assert [p["text"] for p in fake.posted] == ["the *answer*"], "sent twice"
    row = await ledger.get_reply(item.id)
    assert row.platform_message_id == fake.posted[0]["ts"]
    if fault == "500":  # Slack 500'd without posting: reconcile proved it absent, sent again
        assert trail[-1][1] != "reconcile: it arrived"
        assert fake.calls.count("chat.postMessage") == 2
    else:  # found by reconcile, not by a resend
        assert trail[-1] == ("sent", "reconcile: it arrived"), trail
        assert fake.calls.count("chat.postMessage") == 1


async def test_relay_chunks_a_long_reply(fake, ledger: Ledger, start_channel) -> None:
    channel = await start_channel()
    relay = OutboxRelay(ledger, {"slack": channel}, FAST)
    task = asyncio.create_task(relay.run())
    text = "\n".join(f"line {i:05d} " + "z" * 40 for i in range(200))
    try:
        item = await ledger.enqueue_reply("slack", f"{DM}", text, key="long")
        relay.poke()

        async def sent() -> bool:
            return (await ledger.get_reply(item.id)).state is OutboxState.SENT

        await async_wait_until(sent, timeout=10, what="long reply sent")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(fake.posted) == 3 and all(len(p["text"]) <= 4000 for p in fake.posted)
    joined = "".join(p["text"] for p in fake.posted).replace("\n", "")
    assert joined == text.replace("\n", "")


def test_markdown_to_mrkdwn() -> None:
    assert to_mrkdwn("**bold** and *it* ~~gone~~") == "*bold* and _it_ ~gone~"
    assert to_mrkdwn("[docs](https://x.test/a) <!channel> & co") == (
        "<https://x.test/a|docs> &lt;!channel&gt; &amp; co"
    )
    assert to_mrkdwn("# Title\n- item") == "*Title*\n• item"
    assert to_mrkdwn("```py\nx = **y** < 2\n```") == "```x = **y** &lt; 2\n```"
    assert to_mrkdwn("use `a*b*c` here") == "use `a*b*c` here"


async def test_receipts_are_reactions_and_never_raise(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    key = f"{DM}:1700000000.000100"
    for status in (ReceiptKind.WORKING, ReceiptKind.WAITING, ReceiptKind.REPLIED):
        await channel.receipt(Receipt(1, "slack", DM, status, platform_message_id=key))
    adds = [r[3] for r in fake.reactions if r[0] == "add"]
    assert adds == ["eyes", "hourglass_flowing_sand", "white_check_mark"]
    assert ("remove", DM, "1700000000.000100", "eyes") in fake.reactions
    await fake.stop()  # Slack gone: still no exception
    await channel.receipt(Receipt(1, "slack", DM, ReceiptKind.FAILED, platform_message_id=key))
