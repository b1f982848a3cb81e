"""Permission questions as interactive cards; a click is ingested as the typed answer."""

from __future__ import annotations

import json

from agentbridge.delivery.actions import choices_text
from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM, GROUP, MALLORY

from agentbridge_lark.testing import FakeLark, PushedEvent

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
