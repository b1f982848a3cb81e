"""What every ledger contract test stands on: the store factory, a hand-moved clock, helpers.

The suite speaks only ``LedgerStore``; a backend plugs in by providing a ``store_factory``
fixture (see ``agentbridge.testing.ledger_contract``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest
import pytest_asyncio

from agentbridge.ledger.store import LedgerStore
from agentbridge.models import Message

#: the lease every contract claim asks for (seconds)
LEASE = 60.0


class ManualClock:
    """A clock the test moves by hand: leases, backoff and retention without sleeping."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward (never backward: a ledger may assume a monotonic wall clock)."""
        self.t += seconds


class StoreFactory(Protocol):
    """Opens the backend under test. Every call within one test opens the **same** database
    (a reopen is how the suite checks durability across a restart); each test gets a new,
    empty one. The caller closes what it opened."""

    async def __call__(self, *, clock: ManualClock, max_attempts: int = 3) -> LedgerStore:
        """A ready store whose clock is ``clock`` and whose attempt limit is ``max_attempts``."""
        ...


class StoreFixtures:
    """The fixtures of the suite. The backend's test module (or a subclass) provides the
    ``store_factory`` fixture (a ``StoreFactory``); none is defined here, so that a module-level
    one is not shadowed."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The store's clock."""
        return ManualClock()

    @pytest_asyncio.fixture
    async def store(
        self, store_factory: StoreFactory, clock: ManualClock
    ) -> AsyncIterator[LedgerStore]:
        """A fresh store, closed after the test."""
        opened = await store_factory(clock=clock)
        try:
            yield opened
        finally:
            await opened.close()


async def ingest(
    store: LedgerStore,
    text: str = "hello",
    *,
    conversation: str = "c1",
    key: str | None = None,
    agent: str = "a",
    channel: str = "ch",
    **kwargs: Any,
) -> Message:
    """One new message (asserted new)."""
    result = await store.ingest(
        channel, conversation, "alice", text, key=key, agent=agent, **kwargs
    )
    assert result.created, "a fresh ingest must create a row"
    return result.message


async def claim(store: LedgerStore, agent: str = "a", owner: str = "owner-1") -> Message:
    """Claim the next message of ``agent``, asserting there is one (several may be in flight)."""
    msg = await store.claim_next(agent, owner, LEASE, exclusive=False)
    assert msg is not None, f"nothing claimable for agent {agent!r}"
    return msg


async def in_flight(store: LedgerStore, text: str = "hello", **kwargs: Any) -> Message:
    """A message ingested and claimed (``claimed``, with a lease and a fence)."""
    msg = await ingest(store, text, **kwargs)
    claimed = await store.claim_next(msg.agent, "owner-1", LEASE, exclusive=False)
    assert claimed is not None and claimed.id == msg.id, "the new message must be claimable"
    return claimed


async def moves(store: LedgerStore, message_id: int) -> list[str]:
    """The states a message went through, from its audit trail (``transition`` events)."""
    return [
        str(e.to_state)
        for e in await store.events_for(message_id)
        if e.kind == "transition" and e.message_id == message_id and e.to_state
    ]


async def refusals(store: LedgerStore, message_id: int) -> int:
    """How many refused moves the audit trail holds for a message."""
    return sum(e.kind == "refused" for e in await store.events_for(message_id))


__all__ = [
    "LEASE",
    "ManualClock",
    "StoreFactory",
    "StoreFixtures",
    "claim",
    "in_flight",
    "ingest",
    "moves",
    "refusals",
]
