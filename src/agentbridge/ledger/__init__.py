"""The ledger: every inbound message, its lease and fate, the outbox and the audit trail.

Callers use :mod:`agentbridge.ledger.store` (the ``LedgerStore`` protocol and ``open_ledger``);
``Ledger`` is the SQLite backend, re-exported here for code that imported it from
``agentbridge.ledger`` before the ledger became a package.
"""

from agentbridge.ledger.sqlite import Ledger
from agentbridge.ledger.store import (
    ChannelLedger,
    IdempotencyConflict,
    IllegalTransition,
    IngestResult,
    LedgerError,
    LedgerStore,
    NewMessage,
    NotFound,
    StaleLease,
    open_ledger,
)

__all__ = [
    "ChannelLedger",
    "IdempotencyConflict",
    "IllegalTransition",
    "IngestResult",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "NewMessage",
    "NotFound",
    "StaleLease",
    "open_ledger",
]
