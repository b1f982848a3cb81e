"""Contract: permission prompts relayed to the chat (open, first answer wins, audit, restart)."""

from __future__ import annotations

import pytest

from agentbridge.ledger.permissions import SHORT_ID_ALPHABET
from agentbridge.ledger.store import LedgerStore, NotFound, PermissionState
from agentbridge.testing.ledger_contract_base import (
    ManualClock,
    StoreFactory,
    StoreFixtures,
    in_flight,
)


class PermissionContract(StoreFixtures):
    """``open_permission`` / ``answer_permission`` / ``get_permission`` / ``list_permissions``."""

    async def test_open_records_a_pending_request_with_a_short_id(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        msg = await in_flight(store)
        req = await store.open_permission(
            msg.id, "a", "Bash", "rm -rf build", clock() + 600, can_always=True
        )
        assert req.state == PermissionState.PENDING and req.answered_by is None
        # all digits is a valid id too (31^5 draws): lowercase letters and digits, no look-alikes
        assert len(req.short_id) == 5 and set(req.short_id) <= set(SHORT_ID_ALPHABET)
        assert (req.message_id, req.agent, req.tool, req.summary) == (
            msg.id,
            "a",
            "Bash",
            "rm -rf build",
        )
        assert req.can_always and req.created_at == clock() and req.expires_at == clock() + 600
        assert await store.get_permission(req.short_id) == req
        assert await store.list_permissions(state=PermissionState.PENDING) == [req]
        kinds = [e.kind for e in await store.events_for(msg.id)]
        assert "permission_asked" in kinds

    async def test_short_ids_are_unique_among_pending(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        msg = await in_flight(store)
        reqs = [
            await store.open_permission(msg.id, "a", "Bash", f"cmd {i}", clock() + 60)
            for i in range(40)
        ]
        assert len({r.short_id for r in reqs}) == 40

    async def test_first_answer_wins_and_the_second_learns_who(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        msg = await in_flight(store)
        req = await store.open_permission(msg.id, "a", "Bash", "make", clock() + 600)
        clock.advance(3)
        won, first = await store.answer_permission(
            req.short_id.upper(), PermissionState.ALLOWED, "alice"
        )
        assert first and won.state == PermissionState.ALLOWED and won.answered_by == "alice"
        assert won.answered_at == clock() and not won.always
        late, second = await store.answer_permission(req.short_id, PermissionState.DENIED, "bob")
        assert not second and late.state == PermissionState.ALLOWED and late.answered_by == "alice"
        expired, third = await store.answer_permission(
            req.short_id, PermissionState.EXPIRED, "timeout"
        )
        assert not third and expired.state == PermissionState.ALLOWED
        answers = [e for e in await store.events_for(msg.id) if e.kind == "permission_answered"]
        assert [(e.actor, e.detail) for e in answers] == [("alice", f"{req.short_id}: allowed")]

    async def test_always_only_where_the_cli_offers_it(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        msg = await in_flight(store)
        offered = await store.open_permission(
            msg.id, "a", "Bash", "ls", clock() + 60, can_always=True
        )
        plain = await store.open_permission(msg.id, "a", "Bash", "ls", clock() + 60)
        kept, _ = await store.answer_permission(
            offered.short_id, PermissionState.ALLOWED, "alice", always=True
        )
        once, _ = await store.answer_permission(
            plain.short_id, PermissionState.ALLOWED, "alice", always=True
        )
        assert kept.always and not once.always

    async def test_unknown_ids_and_pending_answers_are_refused(
        self, store: LedgerStore, clock: ManualClock
    ) -> None:
        with pytest.raises(NotFound):
            await store.answer_permission("zzzzz", PermissionState.DENIED, "alice")
        assert await store.get_permission("zzzzz") is None
        req = await store.open_permission(None, "a", "Bash", "ls", clock() + 60)
        with pytest.raises(ValueError):
            await store.answer_permission(req.short_id, PermissionState.PENDING, "alice")

    async def test_requests_survive_a_restart_and_filter_by_message(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> None:
        first = await store_factory(clock=clock)
        try:
            one = await in_flight(first, conversation="c1")
            two = await in_flight(first, conversation="c2")
            a = await first.open_permission(one.id, "a", "Edit", "a.py", clock() + 60)
            b = await first.open_permission(two.id, "a", "Bash", "ls", clock() + 60)
            await first.answer_permission(b.short_id, PermissionState.DENIED, "bob")
        finally:
            await first.close()
        again = await store_factory(clock=clock)
        try:
            assert [r.short_id for r in await again.list_permissions(message_id=one.id)] == [
                a.short_id
            ]
            denied = await again.list_permissions(state=PermissionState.DENIED)
            assert [(r.short_id, r.answered_by) for r in denied] == [(b.short_id, "bob")]
            assert [r.id for r in await again.list_permissions()] == [a.id, b.id]
        finally:
            await again.close()


__all__ = ["PermissionContract"]
