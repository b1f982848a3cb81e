"""The evidence queue: arrival order kept, and a turn end queued behind its prompt is seen.

Why it matters: the host skips the separate ``accepted`` commit only when the same attempt's
turn end is already waiting (``agent/evidence.py``); a wrong answer would either cost a commit
or, worse, leave a message accepted by nobody.
"""

from __future__ import annotations

import asyncio

from agentbridge.agent.evidence import EvidenceQueue
from agentbridge.envelope import Envelope
from agentbridge.events import AgentEvent, AgentEventKind

K = AgentEventKind


def _event(kind: AgentEventKind, message_id: int | None, attempt: int = 1) -> AgentEvent:
    env = None if message_id is None else Envelope(message_id, attempt, "local", "me")
    return AgentEvent(kind, env, f"{kind}:{message_id}:{attempt}")


def test_turn_end_queued_only_for_the_same_attempt() -> None:
    queue = EvidenceQueue()
    queue.put(_event(K.PROMPT_RECORDED, 7))
    assert not queue.turn_end_queued(7, 1)  # a prompt alone: accepted gets its own commit
    queue.put(_event(K.ASSISTANT_TEXT, 7))
    queue.put(_event(K.TURN_COMPLETED, 7))
    queue.put(_event(K.TURN_COMPLETED, None))  # a human's turn: no envelope
    assert queue.turn_end_queued(7, 1)
    assert not queue.turn_end_queued(7, 2)  # a re-send is another attempt
    assert not queue.turn_end_queued(8, 1)
    queue.put(_event(K.API_ERROR, 9))
    assert not queue.turn_end_queued(9, 1)  # an API error does not complete: accept apart


def test_get_keeps_arrival_order_and_waits_for_a_put() -> None:
    async def run() -> list[str]:
        queue = EvidenceQueue()
        queue.put(_event(K.PROMPT_RECORDED, 1))
        queue.put(_event(K.TURN_COMPLETED, 1))
        got = [(await queue.get()).text, (await queue.get()).text]
        assert not queue.turn_end_queued(1, 1)  # taken: no longer behind anything
        waiter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not waiter.done()  # empty: the consumer waits, it does not spin or fail
        queue.put(_event(K.PROMPT_RECORDED, 2))
        got.append((await asyncio.wait_for(waiter, 5)).text)
        return got

    assert asyncio.run(run()) == [
        "prompt_recorded:1:1",
        "turn_completed:1:1",
        "prompt_recorded:2:1",
    ]
