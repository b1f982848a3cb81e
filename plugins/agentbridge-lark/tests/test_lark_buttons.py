"""Permission questions as interactive cards; a click is ingested as the typed answer."""

from __future__ import annotations

import asyncio
import json

from agentbridge.config import OutboxConfig, parse_config
from agentbridge.delivery.actions import choices_text
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.supervisor.permissions import PermissionRelay
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM, GROUP, MALLORY, stop

from agentbridge_lark.testing import FakeLark, PushedEvent

FAST = OutboxConfig(backoff=(0.05,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)
QUESTION = f"The agent wants to run `rm -rf build`. Answer {choices_text('abc12', True)}."


async def answered(event: PushedEvent, times: int = 1) -> None:
    async def done() -> bool:
        return len(event.ack_times) >= times

    await async_wait_until(done, timeout=10, what=f"ack of the click {event.event_id}")


async def test_a_click_is_the_answer_from_the_clicker(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, QUESTION, key="permission:7:ask")
    card_id = await channel.deliver(item)
    [post] = fake.posted
    assert post["msg_type"] == "interactive" and post["message_id"] == card_id
    card = json.loads(post["content"])
    labels = [b["text"]["content"] for e in card["elements"] if e["tag"] == "action"
              for b in e["actions"]]  # fmt: skip
    assert labels == ["Allow", "Allow for this session", "Deny"]
    assert fake.post_texts() == [QUESTION]

    stranger = fake.events[await fake.click(card_id, "Allow", MALLORY)]
    await answered(stranger)
    assert stranger.answer == {
        "toast": {"type": "info", "content": "You are not authorised to answer this."}
    }
    assert await ledger.list_messages(channel="lark") == []

    click = fake.events[await fake.click(card_id, "Deny", ALICE)]
    await answered(click)
    assert click.answer == {"toast": {"type": "info", "content": "Sent: no abc12"}}
    await fake.redeliver(click.event_id)  # the same callback pushed again: one row
    await answered(click, 2)
    rows = await ledger.list_messages(channel="lark")
    assert [(r.conversation, r.sender, r.text) for r in rows] == [(DM, ALICE, "no abc12")]


async def test_a_card_in_a_thread_answers_in_that_thread(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    root = await fake.user_message(GROUP, ALICE, "deploy", chat_type="group", mention_bot=True)

    async def stored() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 1

    await async_wait_until(stored, timeout=10, what="ingest")
    conversation = f"{GROUP}:{root}"
    item = await ledger.enqueue_reply("lark", conversation, QUESTION, key="permission:8:ask")
    card_id = await channel.deliver(item)
    assert fake.posted[0]["root_id"] == root and fake.posted[0]["reply_in_thread"] is True
    click = fake.events[await fake.click(card_id, "Allow", ALICE)]
    await answered(click)
    rows = await ledger.list_messages(channel="lark")
    assert [(r.conversation, r.text) for r in rows][-1] == (conversation, "yes abc12")


async def test_plain_replies_have_no_buttons(fake: FakeLark, ledger: Ledger, start_channel):
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, 'type "yes abc12" to agree', key="reply-1")
    await channel.deliver(item)
    assert fake.posted[0]["msg_type"] == "post"


async def test_buttons_answer_a_real_permission_request(
    fake: FakeLark, ledger: Ledger, start_channel, tmp_path
) -> None:
    """The core's permission relay asks (its control command, as a hook calls it); the
    question reaches Lark through the real outbox relay as a card; a stranger's click is
    refused, Alice's "Allow for this session" click decides the request."""
    config = parse_config({"state_dir": str(tmp_path / "s"), "agents": {"a": {"runtime": "demo"}},
                           "permissions": {"timeout": 30}})  # fmt: skip
    relay = PermissionRelay(ledger, config)

    async def ingest(conversation: str, sender: str, text: str, key=None, meta=None, **kw):
        taken = await relay.intercept("lark", conversation, sender, text)  # as the bridge does
        if taken is not None:
            return taken
        return await ledger.ingest("lark", conversation, sender, text, key=key, agent="a",
                                   meta=meta)  # fmt: skip

    channel = await start_channel(ingest=ingest)
    outbox = OutboxRelay(ledger, {"lark": channel}, FAST)
    sending = asyncio.create_task(outbox.run())
    try:
        await fake.user_message(DM, ALICE, "deploy please")

        async def claimed() -> bool:
            return await ledger.claim_next("a", "owner", 60) is not None

        await async_wait_until(claimed, timeout=10, what="the message in flight")
        event = {"tool_name": "Bash", "tool_input": {"command": "make deploy"}, "can_always": True}
        asking = asyncio.create_task(relay.handle({"agent": "a", "event": event}))

        async def card() -> str | None:
            outbox.poke()
            cards = [p for p in fake.posted if p["msg_type"] == "interactive"]
            return cards[0]["message_id"] if cards else None

        card_id = await async_wait_until(card, timeout=15, what="the question as a card")
        await answered(fake.events[await fake.click(card_id, "Allow", MALLORY)])
        assert not asking.done()
        await answered(fake.events[await fake.click(card_id, "Allow for this session", ALICE)])
        decision = await asyncio.wait_for(asking, 10)
        assert decision["decision"] == "allow" and decision["always"] is True

        async def noted() -> bool:
            outbox.poke()
            return any("allowed for this session (by ou_alice)" in t for t in fake.post_texts())

        await async_wait_until(noted, timeout=15, what="the relay's note in the chat")
        assert [r.text for r in await ledger.list_messages(channel="lark")] == ["deploy please"]
    finally:
        await stop(sending)
