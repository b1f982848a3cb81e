"""``interrupted`` on a real SQLite ledger, and recovery reading an interrupt from a transcript.

An interrupted turn (Esc in the agent's pane) is a deliberate stop: the message ends
``interrupted`` (terminal, pruned like completed rows, never replayed), unless a human requeues
it. Recovery after a crash replays a victim whose turn was not interrupted and ends one whose
transcript shows the interrupt.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentbridge.envelope import Envelope, wrap
from agentbridge.ledger.sqlite import IllegalTransition, Ledger, StaleLease
from agentbridge.models import Message
from agentbridge.runtimes.demo import DemoProfile
from agentbridge.states import TERMINAL, MessageState
from agentbridge.supervisor.recovery import read_evidence, recover_victims


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db", clock=Clock())
    try:
        yield led
    finally:
        await led.close()


async def claimed(ledger: Ledger, text: str = "x") -> Message:
    await ledger.ingest("local", "c", "u", text)
    message = await ledger.claim_next("default", "host", 60)
    assert message is not None
    return message


async def test_interrupt_is_terminal_fenced_and_not_in_flight(ledger: Ledger) -> None:
    message = await claimed(ledger)
    await ledger.mark_submitted(message.id, message.fence)
    with pytest.raises(StaleLease):
        await ledger.interrupt(message.id, message.fence - 1, "stale holder")
    moved = await ledger.interrupt(message.id, message.fence, "interrupted in the agent's pane")
    assert moved.state == MessageState.INTERRUPTED and moved.state in TERMINAL
    assert moved.lease_owner is None and moved.reason == "interrupted in the agent's pane"
    assert await ledger.victims(agent="default") == []  # never replayed by recovery
    assert await ledger.claim_next("default", "host", 60) is None
    with pytest.raises(IllegalTransition):
        await ledger.complete(message.id, message.fence, "late reply")
    stats = await ledger.stats()
    assert stats["messages"] == {"interrupted": 1}
    assert stats["agents"] == {}  # not counted as queued or in flight
    events = await ledger.events_for(message.id)
    assert ("submitted", "interrupted") in [(e.from_state, e.to_state) for e in events]


async def test_a_human_may_requeue_an_interrupted_message(ledger: Ledger) -> None:
    message = await claimed(ledger)
    await ledger.interrupt(message.id, message.fence, "interrupted in the agent's pane")
    again = await ledger.requeue_quarantined(message.id)
    assert (again.state, again.attempt) == ("queued", 1)
    assert again.fence > message.fence


async def test_interrupted_rows_are_pruned_after_retention(ledger: Ledger) -> None:
    message = await claimed(ledger)
    await ledger.interrupt(message.id, message.fence, "interrupted in the agent's pane")
    # prune never deletes the newest row (its id would be reused): a newer message stays
    await ledger.ingest("local", "other", "u", "newer")
    assert await ledger.prune(3600) == (0, 0)
    ledger.clock.t += 7200  # type: ignore[attr-defined]
    assert await ledger.prune(3600) == (1, 0)


def _user(text: str, uuid: str, parent: str | None) -> str:
    return json.dumps(
        {"type": "user", "message": {"role": "user", "content": text}, "uuid": uuid,
         "parentUuid": parent, "sessionId": "s", "origin": {"kind": "human"}}
    )  # fmt: skip


def _marker(uuid: str, parent: str) -> str:
    content = [{"type": "text", "text": "[Request interrupted by user]"}]
    return json.dumps(
        {"type": "user", "message": {"role": "user", "content": content}, "uuid": uuid,
         "parentUuid": parent, "sessionId": "s"}
    )  # fmt: skip


async def test_recovery_ends_an_interrupted_victim_and_replays_the_other(
    ledger: Ledger, tmp_path: Path
) -> None:
    stopped = await claimed(ledger, "stopped by Esc")
    await ledger.mark_accepted(stopped.id, stopped.fence)
    transcript = tmp_path / "t.jsonl"
    env = Envelope(stopped.id, stopped.attempt, "local", "u")
    transcript.write_text(_user(wrap(env, "stopped by Esc"), "a", None) + "\n" + _marker("b", "a"))
    transcript.write_text(transcript.read_text() + "\n")
    evidence = read_evidence(DemoProfile(), transcript, None)
    assert evidence.aborted == {(stopped.id, 1)}
    # a second victim (another agent, no interrupt in its record): replayed as before
    await ledger.ingest("local", "d", "u", "crashed", agent="other")
    crashed = await ledger.claim_next("other", "host2", 60)
    assert crashed is not None
    report = await recover_victims(ledger, [stopped, crashed], evidence, "re-sent")
    assert report.interrupted == [stopped.id] and report.replayed == [crashed.id]
    assert (await ledger.get(stopped.id)).state == "interrupted"
    assert ((await ledger.get(crashed.id)).state, (await ledger.get(crashed.id)).attempt) == (
        "queued",
        2,
    )


def test_a_prompt_written_again_after_the_interrupt_is_not_an_interrupt(tmp_path: Path) -> None:
    env = Envelope(7, 1, "local", "u")
    transcript = tmp_path / "t.jsonl"
    lines = [_user(wrap(env, "x"), "a", None), _marker("b", "a"), _user(wrap(env, "x"), "c", "b")]
    transcript.write_text("\n".join(lines) + "\n")
    evidence = read_evidence(DemoProfile(), transcript, None)
    assert evidence.aborted == set() and (7, 1) in evidence.recorded
