"""Replies out over the real SDK's OpenAPI client: error classes, at most once (uuid,
unknown + reconcile), threads, chunking at Lark's limits, markdown → post, receipts."""

from __future__ import annotations

import asyncio
import json

import pytest
from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, Receipt
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM, GROUP, stop

from agentbridge_lark.outbound import MAX_POST_BYTES, body_bytes, fit, to_post
from agentbridge_lark.testing import APP_SECRET, FakeLark

FAST = OutboxConfig(backoff=(0.05,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)


async def test_rate_limit_is_transient_with_lark_retry_after(fake, ledger: Ledger, start_channel):
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, "hi", key="r1")
    fake.faults.append("429")
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.TRANSIENT
    assert caught.value.retry_after == 3.0  # x-ogw-ratelimit-reset
    assert fake.posted == []
    assert await channel.deliver(item) == fake.posted[0]["message_id"]
    assert fake.post_texts() == ["hi"]


@pytest.mark.parametrize(
    ("fault", "code"), [("not_in_chat", "230002"), ("secret_reset", "10014"), (None, "230001")]
)
async def test_permanent_errors(fake, ledger: Ledger, start_channel, fault, code) -> None:
    """Bot not in the chat, credentials no longer valid, no such chat: never retried."""
    channel = await start_channel()
    conversation = DM if fault else "oc_no_such_chat"
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", conversation, "hi", key="r1")
    if fault == "secret_reset":
        fake.reject_secret = True  # the cached token is refused, and no new one is given
    elif fault:
        fake.faults.append(fault)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert code in str(caught.value) and APP_SECRET not in str(caught.value)
    assert fake.posted == []


@pytest.mark.parametrize("fault", ["stall", "reset"])
async def test_answer_lost_is_unknown_never_resent(fake, ledger, start_channel, fault) -> None:
    """Lark posted the message, the answer was lost: the relay marks it unknown, reconcile
    finds the post in the message list, nothing is sent twice."""
    channel = await start_channel(request_timeout=0.5)
    fake.chats[DM] = "p2p"
    fake.stall_seconds = 3
    fake.faults.append(fault)
    relay = OutboxRelay(ledger, {"lark": channel}, FAST)
    task = asyncio.create_task(relay.run())
    try:
        item = await ledger.enqueue_reply("lark", DM, "the **answer**", key="r-once")
        relay.poke()

        async def reconciled() -> bool:  # ``unknown`` first, then ``sent`` by reconcile
            return (await ledger.get_reply(item.id)).state is OutboxState.SENT

        await async_wait_until(reconciled, timeout=15, what="reply reconciled")
    finally:
        await stop(task)
    assert fake.post_texts() == ["the **answer**"], "sent twice"
    assert fake.send_requests == 1, "resent (Lark's uuid only hid it)"
    row = await ledger.get_reply(item.id)
    assert row.platform_message_id == fake.posted[0]["message_id"]


async def test_a_revoked_token_is_fetched_again(fake, ledger: Ledger, start_channel) -> None:
    """A send refused for its token was not acted on: new token, the same request again."""
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, "hi", key="r3")
    fake.faults.append("bad_token")
    assert await channel.deliver(item) == fake.posted[0]["message_id"]
    assert fake.send_requests == 2 and len(fake.posted) == 1


async def test_a_resend_after_a_lost_answer_reuses_the_uuid(
    fake, ledger: Ledger, start_channel
) -> None:
    """A part whose answer was lost, sent again (a human's ``outbox retry``, or a reconcile
    that could not see it), posts nothing new within Lark's uuid hour."""
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, "once", key="r2")
    fake.faults.append("reset")
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.UNKNOWN
    again = await channel.deliver(item)
    assert fake.send_requests == 2 and len(fake.posted) == 1
    assert again == fake.posted[0]["message_id"] and len(fake.posted[0]["uuid"]) <= 50


async def test_thread_replies_go_to_the_thread(fake, ledger: Ledger, start_channel) -> None:
    channel = await start_channel()
    root = await fake.user_message(GROUP, ALICE, "question", chat_type="group", mention_bot=True)

    async def stored() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 1

    await async_wait_until(stored, timeout=10, what="ingest")
    [row] = await ledger.list_messages(channel="lark")
    item = await ledger.enqueue_reply("lark", row.conversation, "answer", key="t1")
    await channel.deliver(item)
    [post] = fake.posted
    assert post["root_id"] == root and post["reply_in_thread"] is True
    thread = fake.messages[-1]["thread_id"]
    assert thread.startswith("omt_")
    # the user answers in the thread: same conversation, no mention needed
    await fake.user_message(GROUP, ALICE, "thanks", chat_type="group", root_id=root)

    async def both() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 2

    await async_wait_until(both, timeout=10, what="thread reply")
    rows = await ledger.list_messages(channel="lark")
    assert {r.conversation for r in rows} == {f"{GROUP}:{root}"}


async def test_relay_chunks_a_long_reply(fake, ledger: Ledger, start_channel) -> None:
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    relay = OutboxRelay(ledger, {"lark": channel}, FAST)
    task = asyncio.create_task(relay.run())
    text = "\n".join(f"行 {i:05d} " + "字" * 40 for i in range(300))
    try:
        item = await ledger.enqueue_reply("lark", DM, text, key="long")
        relay.poke()

        async def sent() -> bool:
            return (await ledger.get_reply(item.id)).state is OutboxState.SENT

        await async_wait_until(sent, timeout=15, what="long reply sent")
    finally:
        await stop(task)
    texts = fake.post_texts()
    assert len(texts) == 4 and all(len(t) <= channel.limits.max_message_length for t in texts)
    assert all(body_bytes(p["content"]) <= MAX_POST_BYTES for p in fake.posted)
    assert "".join(texts).replace("\n", "") == text.replace("\n", "")


def test_markdown_becomes_a_post_and_oversized_text_is_split_by_bytes() -> None:
    post = json.loads(to_post("# Title\n**bold** [x](https://a.test)\n```\n# not a title\n```"))
    [[node]] = post["zh_cn"]["content"]
    assert node["tag"] == "md"
    assert node["text"] == "**Title**\n**bold** [x](https://a.test)\n```\n# not a title\n```"
    quotes = '"' * 12_000  # escaped twice: 4 bytes each
    pieces = fit(quotes)
    assert len(pieces) > 1 and "".join(pieces) == quotes
    assert all(body_bytes(to_post(p)) <= MAX_POST_BYTES for p in pieces)


async def test_receipts_are_reactions_and_never_raise(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    for status in (ReceiptKind.WORKING, ReceiptKind.WAITING, ReceiptKind.REPLIED):
        await channel.receipt(Receipt(1, "lark", DM, status, platform_message_id="om_9"))
    adds = [r[2] for r in fake.reactions if r[0] == "add"]
    assert adds == ["OnIt", "OneSecond", "DONE"]
    assert [r[0] for r in fake.reactions].count("delete") == 2
    await fake.stop()  # Lark gone: still no exception
    await channel.receipt(Receipt(1, "lark", DM, ReceiptKind.FAILED, platform_message_id="om_9"))
