"""Inbound over the real SDK's long connection against the fake Lark: ack after commit,
dedup, allowlists, groups and threads, reconnect and catch-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM, GROUP, MALLORY

from agentbridge_lark import LarkChannel
from agentbridge_lark.testing import FakeLark, PushedEvent

Start = Callable[..., Awaitable[LarkChannel]]


async def acked(event: PushedEvent, times: int = 1) -> None:
    async def done() -> bool:
        return len(event.ack_times) >= times

    await async_wait_until(done, timeout=10, what=f"ack #{times} of {event.event_id}")


async def test_dm_is_ingested_then_acked_and_redelivery_is_one_row(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    await start_channel()
    message_id = await fake.user_message(DM, ALICE, "hello lark")
    event = fake.event_for(message_id)
    await acked(event)
    rows = await ledger.list_messages(channel="lark")
    assert [(r.conversation, r.sender, r.text) for r in rows] == [(DM, ALICE, "hello lark")]
    await fake.redeliver(event.event_id)
    await acked(event, 2)
    assert len(await ledger.list_messages(channel="lark")) == 1
    assert fake.pings >= 0 and event.nacks == 0


async def test_a_failed_ingest_is_not_acked_and_comes_back(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    calls: list[str] = []
    real = None

    async def flaky(conversation: str, sender: str, text: str, **kw: object) -> object:
        calls.append(text)
        if len(calls) == 1:
            raise OSError("disk full")
        assert real is not None
        return await real(conversation, sender, text, **kw)

    from lark_helpers import ledger_ingest

    real = ledger_ingest(ledger)
    channel = await start_channel(ingest=flaky)
    message_id = await fake.user_message(DM, ALICE, "keep me")
    event = fake.event_for(message_id)

    async def refused() -> bool:
        return event.nacks == 1

    await async_wait_until(refused, timeout=10, what="the SDK's code-500 reply")
    assert event.ack_times == []  # never acked before the commit

    # the held chat is read back from the message list until the message is in
    async def stored() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 1

    await async_wait_until(stored, timeout=10, what="the retry catch-up")
    assert channel.ingest_failures == 1
    await fake.redeliver(event.event_id)  # Lark's own retry: acked now, still one row
    await acked(event)
    assert [r.text for r in await ledger.list_messages(channel="lark")] == ["keep me"]


async def test_strangers_are_refused_and_never_stored(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    channel = await start_channel(allowed_tenants=["tenant_1"])
    stranger = await fake.user_message("oc_dm_mallory", MALLORY, "let me in")
    await acked(fake.event_for(stranger))  # acked: Lark must not push it again
    other_tenant = await fake.user_message(DM, ALICE, "from elsewhere", tenant="tenant_2")
    await acked(fake.event_for(other_tenant))
    by_user_id = await fake.user_message(DM, "ou_other_app_id", "hi", user_id="alice_uid")
    await acked(fake.event_for(by_user_id))
    assert await ledger.list_messages(channel="lark") == []
    assert channel.refused == 3


async def test_user_id_allowlist_matches_live_events(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    await start_channel(allowed_users=["alice_uid"])
    message_id = await fake.user_message(DM, "ou_alice2", "by user id", user_id="alice_uid")
    await acked(fake.event_for(message_id))
    assert [r.text for r in await ledger.list_messages(channel="lark")] == ["by user id"]


async def test_group_mentions_open_a_thread_and_its_replies_count(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    await start_channel()
    chatter = await fake.user_message(GROUP, ALICE, "humans talking", chat_type="group")
    await acked(fake.event_for(chatter))
    root = await fake.user_message(GROUP, ALICE, "please look", chat_type="group", mention_bot=True)
    await acked(fake.event_for(root))
    follow = await fake.user_message(GROUP, ALICE, "and this", chat_type="group", root_id=root)
    await acked(fake.event_for(follow))
    rows = await ledger.list_messages(channel="lark")
    assert [(r.conversation, r.text) for r in rows] == [
        (f"{GROUP}:{root}", "please look"),
        (f"{GROUP}:{root}", "and this"),
    ]
    assert rows[1].meta.get("thread_id", "").startswith("omt_")


async def test_reconnect_catches_up_what_came_while_disconnected(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    channel = await start_channel()
    first = await fake.user_message(DM, ALICE, "before")
    await acked(fake.event_for(first))
    connects = fake.connects

    await fake.disconnect_all()
    await fake.user_message(DM, ALICE, "while away", live=False)

    async def back() -> bool:
        return fake.connects > connects and channel.reconnects >= 1

    await async_wait_until(back, timeout=20, what="the SDK's reconnect")

    async def caught() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 2

    await async_wait_until(caught, timeout=10, what="catch-up after the reconnect")
    assert [r.text for r in await ledger.list_messages(channel="lark")] == ["before", "while away"]


async def test_restart_catches_up_from_the_stored_cursor(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    channel = await start_channel()
    first = await fake.user_message(DM, ALICE, "one")
    await acked(fake.event_for(first))
    await channel.stop()
    await fake.user_message(DM, ALICE, "two", live=False)
    await fake.user_message(DM, MALLORY, "not you", live=False)
    again = await start_channel()

    async def caught() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 2

    await async_wait_until(caught, timeout=10, what="catch-up at start")
    assert [r.text for r in await ledger.list_messages(channel="lark")] == ["one", "two"]
    assert again.refused == 1


async def test_allowed_chats_limit_groups_not_dms(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    channel = await start_channel(allowed_chats=[GROUP])
    elsewhere = await fake.user_message("oc_other", ALICE, "hi", chat_type="group",
                                        mention_bot=True)  # fmt: skip
    await acked(fake.event_for(elsewhere))
    here = await fake.user_message(GROUP, ALICE, "hi here", chat_type="group", mention_bot=True)
    await acked(fake.event_for(here))
    dm = await fake.user_message(DM, ALICE, "hi in a DM")
    await acked(fake.event_for(dm))
    assert [r.text for r in await ledger.list_messages(channel="lark")] == ["hi here", "hi in a DM"]
    assert channel.refused == 1


async def test_a_thread_follow_up_sent_while_down_is_caught_up(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    """The bot's answer made the thread; a reply in it while the bridge was down is read
    back from the thread's own list after the restart (no mention needed)."""
    channel = await start_channel()
    root = await fake.user_message(GROUP, ALICE, "question", chat_type="group", mention_bot=True)
    await acked(fake.event_for(root))
    conversation = f"{GROUP}:{root}"
    await channel.deliver(await ledger.enqueue_reply("lark", conversation, "answer", key="a1"))
    await channel.stop()
    await fake.user_message(GROUP, ALICE, "follow-up", chat_type="group", root_id=root,
                            live=False)  # fmt: skip
    await start_channel()

    async def caught() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 2

    await async_wait_until(caught, timeout=10, what="the thread's catch-up")
    rows = await ledger.list_messages(channel="lark")
    assert [(r.conversation, r.text) for r in rows] == [
        (conversation, "question"),
        (conversation, "follow-up"),
    ]


async def test_group_mentions_wait_while_the_bot_id_is_unknown(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    channel = await start_channel()
    channel.bot_open_id = None  # as if bot/v3/info had failed at start
    mention = await fake.user_message(GROUP, ALICE, "are you there", chat_type="group",
                                      mention_bot=True)  # fmt: skip
    event = fake.event_for(mention)

    async def refused() -> bool:
        return event.nacks >= 1

    await async_wait_until(refused, timeout=10, what="no ack while the bot id is unknown")
    assert await ledger.list_messages(channel="lark") == []
    channel.bot_open_id = "ou_bot"  # known again (the background retry)

    async def stored() -> bool:
        return len(await ledger.list_messages(channel="lark")) == 1

    await async_wait_until(stored, timeout=10, what="the held chat's catch-up")


async def test_a_sticker_is_not_forwarded_and_the_sender_is_told_once(
    fake: FakeLark, ledger: Ledger, start_channel: Start
) -> None:
    await start_channel()
    picture = await fake.user_message(DM, ALICE, "", image=True)
    event = fake.event_for(picture)
    await acked(event)

    async def told() -> bool:
        return len(fake.posted) == 1

    await async_wait_until(told, timeout=10, what="the no-text notice")
    await fake.redeliver(event.event_id)
    await acked(event, 2)

    async def told_again() -> bool:
        return fake.send_requests == 2

    await async_wait_until(told_again, timeout=10, what="the second notice request")
    assert len(fake.posted) == 1  # the same uuid: one notice
    assert "Only text, pictures and files" in fake.post_texts()[0]
    assert await ledger.list_messages(channel="lark") == []
