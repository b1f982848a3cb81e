"""Hypothesis drives the real ledger (a real SQLite file) and a tiny in-memory model side by side.

Random sequences of ingest (with repeated keys), claim, submit, accept, complete, fail,
release, stale-fence attempts, victim requeues, quarantine, requeue of quarantined and drop.
After every step the ledger's states, attempts and fences must equal the model's, and the
invariants hold: at most one message in flight per conversation and per (exclusive) agent,
in-flight rows carry a lease, every row has an audit trail.

Each machine owns its event loop and runs the ledger's coroutines on it from the rules.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agentbridge.ledger.sqlite import IdempotencyConflict, IllegalTransition, Ledger, StaleLease
from agentbridge.models import Message
from agentbridge.states import IN_FLIGHT, MessageState

T = TypeVar("T")

MAX_ATTEMPTS = 3
#: conversations are routed to one agent each (as the supervisor's routing does)
CONVERSATIONS = {"c0": "A", "c1": "A", "c2": "B", "c3": "B"}
AGENTS = ("A", "B")


@dataclass
class Model:
    """What the ledger should hold for one message."""

    id: int
    conversation: str
    agent: str
    text: str
    priority: int
    state: MessageState = MessageState.QUEUED
    attempt: int = 1
    fence: int = 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-stateful-"))
        self.clock_t = 1_000.0
        self.ledger = self.run(
            Ledger.open(
                self.dir / "l.db",
                synchronous="normal",
                clock=lambda: self.clock_t,
                max_attempts=MAX_ATTEMPTS,
            )
        )
        self.model: dict[int, Model] = {}
        self.keys: dict[str, int] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.ledger.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def in_state(self, *states: MessageState) -> list[int]:
        return sorted(i for i, m in self.model.items() if m.state in states)

    def expected_claim(self, agent: str) -> int | None:
        mine = [m for m in self.model.values() if m.agent == agent]
        if any(m.state in IN_FLIGHT for m in mine):
            return None  # exclusive: one in flight per agent
        busy = {m.conversation for m in mine if m.state in IN_FLIGHT}
        queued = [m for m in mine if m.state == "queued" and m.conversation not in busy]
        if not queued:
            return None
        return min(queued, key=lambda m: (-m.priority, m.id)).id

    # ------------------------------------------------------------------ rules

    @rule(
        conversation=st.sampled_from(sorted(CONVERSATIONS)),
        key=st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "k4", "k5"])),
        text=st.sampled_from(["hello", "other", "third"]),
        priority=st.sampled_from([0, 0, 0, 1]),
    )
    def ingest(self, conversation: str, key: str | None, text: str, priority: int) -> None:
        agent = CONVERSATIONS[conversation]
        known = self.keys.get(key) if key is not None else None
        if known is not None and self.model[known].text != text:
            with pytest.raises(IdempotencyConflict):
                self.run(self.ledger.ingest("tg", conversation, "u", text, key, agent, priority))
            return
        res = self.run(self.ledger.ingest("tg", conversation, "u", text, key, agent, priority))
        if known is not None:
            assert not res.created and res.message.id == known
            return
        assert res.created and res.message.id not in self.model
        self.model[res.message.id] = Model(res.message.id, conversation, agent, text, priority)
        if key is not None:
            self.keys[key] = res.message.id

    @rule(agent=st.sampled_from(AGENTS))
    def claim(self, agent: str) -> None:
        expected = self.expected_claim(agent)
        got = self.run(self.ledger.claim_next(agent, f"host-{agent}", 60))
        assert (got.id if got else None) == expected
        if got is not None:
            m = self.model[got.id]
            m.state, m.fence = MessageState.CLAIMED, m.fence + 1
            assert (got.fence, got.attempt) == (m.fence, m.attempt)

    @precondition(lambda self: self.in_state(*IN_FLIGHT))
    @rule(data=st.data(), to=st.sampled_from(["submitted", "accepted", "completed", "failed"]))
    def advance(self, data: st.DataObject, to: str) -> None:
        m = self.model[data.draw(st.sampled_from(self.in_state(*IN_FLIGHT)))]
        if to == "submitted":
            got = self.run(self.ledger.mark_submitted(m.id, m.fence))
            if m.state == "claimed":
                m.state = MessageState.SUBMITTED
        elif to == "accepted":
            got = self.run(self.ledger.mark_accepted(m.id, m.fence))
            m.state = MessageState.ACCEPTED
        elif to == "completed":
            got = self.run(self.ledger.complete(m.id, m.fence, f"reply {m.id}"))
            m.state = MessageState.COMPLETED
            assert got.reply == f"reply {m.id}"
        else:
            got = self.run(self.ledger.fail(m.id, m.fence, "gave up"))
            m.state = MessageState.FAILED
        assert got.state == m.state

    @precondition(lambda self: any(m.fence > 0 for m in self.model.values()))
    @rule(
        data=st.data(),
        op=st.sampled_from(["complete", "heartbeat", "requeue", "submit", "release", "fail"]),
    )
    def stale_fence(self, data: st.DataObject, op: str) -> None:
        m = self.model[
            data.draw(st.sampled_from(sorted(i for i, x in self.model.items() if x.fence)))
        ]
        old = data.draw(st.integers(0, m.fence - 1))
        calls = {
            "complete": lambda: self.ledger.complete(m.id, old, "late"),
            "heartbeat": lambda: self.ledger.heartbeat(m.id, old, 60),
            "requeue": lambda: self.ledger.requeue_victim(m.id, old, "stale"),
            "submit": lambda: self.ledger.mark_submitted(m.id, old),
            "release": lambda: self.ledger.release(m.id, old, "stale"),
            "fail": lambda: self.ledger.fail(m.id, old, "stale"),
        }
        before = len(self.run(self.ledger.events_for(m.id)))
        with pytest.raises(StaleLease):
            self.run(calls[op]())
        after = self.run(self.ledger.events_for(m.id))
        assert len(after) == before + 1 and after[-1].kind == "refused"

    @rule(agent=st.sampled_from(AGENTS))
    def requeue_victims(self, agent: str) -> None:
        victims = self.run(self.ledger.victims(agent=agent))
        expected = sorted(
            m.id for m in self.model.values() if m.agent == agent and m.state in IN_FLIGHT
        )
        assert [v.id for v in victims] == expected
        for v in victims:
            m = self.model[v.id]
            got = self.run(self.ledger.requeue_victim(v.id, v.fence, "session died"))
            m.fence += 1
            if m.attempt >= MAX_ATTEMPTS:
                m.state = MessageState.QUARANTINED
                assert got.reason is not None and f"{MAX_ATTEMPTS} attempts" in got.reason
            else:
                m.state, m.attempt = MessageState.QUEUED, m.attempt + 1
            assert (got.state, got.attempt, got.fence) == (m.state, m.attempt, m.fence)

    @precondition(lambda self: self.in_state(MessageState.CLAIMED))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        m = self.model[data.draw(st.sampled_from(self.in_state(MessageState.CLAIMED)))]
        self.run(self.ledger.release(m.id, m.fence, "box not empty"))
        m.state, m.fence = MessageState.QUEUED, m.fence + 1

    @precondition(lambda self: self.model)
    @rule(data=st.data(), action=st.sampled_from(["quarantine", "requeue_quarantined", "drop"]))
    def human(self, data: st.DataObject, action: str) -> None:
        m = self.model[data.draw(st.sampled_from(sorted(self.model)))]
        allowed = {
            "quarantine": {MessageState.QUEUED, *IN_FLIGHT},
            "requeue_quarantined": {MessageState.QUARANTINED},
            "drop": {MessageState.QUEUED, MessageState.QUARANTINED, *IN_FLIGHT},
        }[action]
        call: Callable[[], Coroutine[Any, Any, Message]] = {
            "quarantine": lambda: self.ledger.quarantine(m.id, "human says stop"),
            "requeue_quarantined": lambda: self.ledger.requeue_quarantined(m.id),
            "drop": lambda: self.ledger.drop(m.id),
        }[action]
        if m.state not in allowed:
            with pytest.raises(IllegalTransition):
                self.run(call())
            return
        self.run(call())
        m.fence += 1
        if action == "quarantine":
            m.state = MessageState.QUARANTINED
        elif action == "drop":
            m.state = MessageState.FAILED
        else:
            m.state, m.attempt = MessageState.QUEUED, 1

    @rule(seconds=st.sampled_from([1.0, 30.0, 90.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock_t += seconds

    # ------------------------------------------------------------------ invariants

    @invariant()
    def ledger_matches_model(self) -> None:
        rows = self.run(self.ledger.list_messages(limit=100_000))
        assert {r.id: (r.state, r.attempt, r.fence) for r in rows} == {
            m.id: (m.state, m.attempt, m.fence) for m in self.model.values()
        }
        flying = [r for r in rows if r.state in IN_FLIGHT]
        conversations = [(r.channel, r.conversation) for r in flying]
        assert len(conversations) == len(set(conversations)), "two in flight in a conversation"
        agents = [r.agent for r in flying]
        assert len(agents) == len(set(agents)), "two in flight for an exclusive agent"
        for r in flying:
            assert r.lease_owner == f"host-{r.agent}" and r.lease_expires_at is not None
        for r in rows:
            if r.state == "completed":
                assert r.reply == f"reply {r.id}"
            if r.state not in IN_FLIGHT:
                assert r.lease_owner is None

    @invariant()
    def every_row_has_its_history(self) -> None:
        for mid in self.model:
            events = self.run(self.ledger.events_for(mid))
            assert events and events[0].to_state == "queued"
            last = [e for e in events if e.kind == "transition"][-1]
            assert last.to_state == self.model[mid].state


LedgerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerStateful = LedgerMachine.TestCase
