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
