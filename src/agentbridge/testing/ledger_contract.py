"""The ledger contract suite: what every ``LedgerStore`` backend must do, as tests to inherit.

Usage (a backend's test module)::

    import pytest
    from agentbridge.testing.ledger_contract import LedgerStoreContract, ManualClock

    @pytest.fixture
    def store_factory(tmp_path):
        async def open_store(*, clock: ManualClock, max_attempts: int = 3):
            return await MyStore.open(DSN_FOR(tmp_path), clock=clock, max_attempts=max_attempts)
        return open_store

    class TestMyStore(LedgerStoreContract):
        pass

Every call of the factory within one test must open the same, initially empty database (the
suite reopens it to check what survives a restart). The tests speak only the protocol, and
time moves only by the ``ManualClock``: nothing sleeps, nothing is mocked.
"""

from __future__ import annotations

from agentbridge.testing.ledger_contract_asks import AskContract
from agentbridge.testing.ledger_contract_base import ManualClock, StoreFactory, StoreFixtures
from agentbridge.testing.ledger_contract_messages import MessageContract
from agentbridge.testing.ledger_contract_nodes import NodeContract
from agentbridge.testing.ledger_contract_outbox import OutboxContract
from agentbridge.testing.ledger_contract_permissions import PermissionContract


class LedgerStoreContract(
    MessageContract, OutboxContract, PermissionContract, AskContract, NodeContract
):
    """The whole contract: inbound messages, replies, events, changes, retention, permissions,
    the agent's questions, nodes and leases."""


__all__ = [
    "AskContract",
    "LedgerStoreContract",
    "ManualClock",
    "MessageContract",
    "NodeContract",
    "OutboxContract",
    "PermissionContract",
    "StoreFactory",
    "StoreFixtures",
]
