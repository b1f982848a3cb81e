"""The backend-agnostic ledger contract, run against every backend this build has.

Only SQLite today, opened both ways callers do (a path, a ``sqlite:///`` URL); a new backend
joins by adding its factory to ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agentbridge.ledger.store import LedgerStore, open_ledger
from agentbridge.testing.ledger_contract import LedgerStoreContract, ManualClock, StoreFactory

#: backend name → (the test's private directory → how to name its database)
BACKENDS: dict[str, Callable[[Path], str | Path]] = {
    "sqlite-path": lambda root: root / "contract.db",
    "sqlite-url": lambda root: f"sqlite://{root / 'contract.db'}",
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    url = BACKENDS[request.param](tmp_path)

    def open_store(*, clock: ManualClock, max_attempts: int = 3) -> Awaitable[LedgerStore]:
        return open_ledger(url, clock=clock, max_attempts=max_attempts)

    return open_store


class TestLedgerStore(LedgerStoreContract):
    """Every contract test, once per backend."""
