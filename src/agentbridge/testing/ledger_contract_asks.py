"""Contract: the agent's questions to the user (open, first answer wins, audit, restart)."""

from __future__ import annotations

import pytest

from agentbridge.ledger.permissions import SHORT_ID_ALPHABET
from agentbridge.ledger.store import AskState, LedgerStore, NotFound
from agentbridge.testing.ledger_contract_base import (
    ManualClock,
    StoreFactory,
    StoreFixtures,
    in_flight,
)

DAY = 86400.0


class AskContract(StoreFixtures):
    """``open_ask`` / ``answer_ask`` / ``get_ask`` / ``list_asks``."""

    async def test_open_records_a_pending_question_with_its_choices(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        msg = await in_flight(store)
        ask = await store.open_ask(
            "a",
            msg.channel,
            msg.conversation,
            "Which database?",
            ["postgres", "sqlite"],
            clock() + 300,
            message_id=msg.id,
            attempt=msg.attempt,
        )
        assert ask.state == AskState.PENDING and ask.answer is None and ask.answered_by is None
        # all digits is a valid id too (31^5 draws): lowercase letters and digits, no look-alikes
        assert len(ask.short_id) == 5 and set(ask.short_id) <= set(SHORT_ID_ALPHABET)
        assert ask.choices == ("postgres", "sqlite") and ask.question == "Which database?"
        assert (ask.message_id, ask.attempt, ask.agent) == (msg.id, msg.attempt, "a")
        assert ask.created_at == clock() and ask.expires_at == clock() + 300
        assert await store.get_ask(ask.id) == ask
        assert await store.list_asks(state=AskState.PENDING) == [ask]
        asked = [e for e in await store.events_for(msg.id) if e.kind == "ask"]
        assert [(e.actor, e.detail) for e in asked] == [
            ("agent:a", f"{ask.short_id}: Which database?")
        ]
        assert ask.to_json()["choices"] == ["postgres", "sqlite"]

    async def test_short_ids_are_unique_among_pending(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        asks = [await store.open_ask("a", "ch", "c", f"q{i}", [], clock() + 60) for i in range(40)]
        assert len({a.short_id for a in asks}) == 40

    async def test_first_answer_wins_and_the_timeout_loses_to_it(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        msg = await in_flight(store)
        ask = await store.open_ask(
            "a", "ch", "c1", "go on?", [], clock() + 60, message_id=msg.id, attempt=1
        )
        clock.advance(2)
        won, first = await store.answer_ask(
            ask.id, AskState.ANSWERED, "alice", "yes please", key="k1"
        )
        assert first and won.state == AskState.ANSWERED and won.answer == "yes please"
        assert (won.answered_by, won.answer_key, won.answered_at) == ("alice", "k1", clock())
        late, second = await store.answer_ask(ask.id, AskState.ANSWERED, "bob", "no")
        assert not second and late == won
        expired, third = await store.answer_ask(ask.id, AskState.EXPIRED, "timeout")
        assert not third and expired.state == AskState.ANSWERED
        kinds = [(e.kind, e.actor) for e in await store.events_for(msg.id) if "ask_" in e.kind]
        assert kinds == [("ask_answered", "alice")]

    async def test_expiry_and_refusals(self, store: LedgerStore, clock: ManualClock) -> None:
        ask = await store.open_ask("a", "ch", "c1", "still there?", [], clock() + 5)
        with pytest.raises(ValueError):
            await store.answer_ask(ask.id, AskState.PENDING, "alice")
        with pytest.raises(ValueError):
            await store.answer_ask(ask.id, AskState.ANSWERED, "alice")  # no answer text
        with pytest.raises(NotFound):
            await store.answer_ask(ask.id + 1000, AskState.EXPIRED, "timeout")
        with pytest.raises(NotFound):
            await store.get_ask(ask.id + 1000)
        gone, won = await store.answer_ask(ask.id, AskState.EXPIRED, "timeout")
        assert won and gone.state == AskState.EXPIRED and gone.answer is None
        again = await store.open_ask("a", "ch", "c1", "still there?", [], clock() + 5)
        assert again.id != ask.id  # an expired id may be drawn again; rows stay apart

    async def test_retention_prunes_settled_and_long_abandoned_asks(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        """The ledger's ``prune`` takes asks too: answered or expired ones older than the
        retention, and pending ones whose wait ended before it; a live question stays."""
        answered = await store.open_ask("a", "ch", "c1", "old?", ["x"], clock() + 60)
        await store.answer_ask(answered.id, AskState.ANSWERED, "alice", "x")
        expired = await store.open_ask("a", "ch", "c2", "old too?", [], clock() + 60)
        await store.answer_ask(expired.id, AskState.EXPIRED, "timeout")
        abandoned = await store.open_ask("a", "ch", "c3", "anyone?", [], clock() + 60)
        waiting = await store.open_ask("a", "ch", "c4", "long wait?", [], clock() + 3 * DAY)
        clock.advance(2 * DAY)
        recent = await store.open_ask("a", "ch", "c5", "new?", [], clock() + 60)
        await store.answer_ask(recent.id, AskState.ANSWERED, "bob", "yes")
        await store.prune(DAY)
        for gone in (answered, expired, abandoned):
            with pytest.raises(NotFound):
                await store.get_ask(gone.id)
        assert [a.id for a in await store.list_asks()] == [waiting.id, recent.id]

    async def test_answers_survive_a_restart_and_filter_by_conversation(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        first = await store_factory(clock=clock)
        try:
            one = await first.open_ask("a", "web", "alice", "q1", ["x"], clock() + 60)
            two = await first.open_ask("a", "web", "bob", "q2", [], clock() + 60)
            three = await first.open_ask("b", "tg", "alice", "q3", [], clock() + 60)
            await first.answer_ask(two.id, AskState.ANSWERED, "bob", "fine", key="m7")
        finally:
            await first.close()
        again = await store_factory(clock=clock)
        try:
            answered = await again.get_ask(two.id)
            assert (answered.state, answered.answer, answered.answer_key) == (
                AskState.ANSWERED,
                "fine",
                "m7",
            )
            mine = await again.list_asks(channel="web", conversation="alice")
            assert [a.id for a in mine] == [one.id]
            pending = await again.list_asks(state=AskState.PENDING)
            assert [a.id for a in pending] == [one.id, three.id]
            assert [a.id for a in await again.list_asks(limit=2)] == [two.id, three.id]
        finally:
            await again.close()


__all__ = ["AskContract"]
