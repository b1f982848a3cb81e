"""Shared by the Discord tests (a unique module name: no clash with the root ``tests/``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger

ALICE = 410_000_000_000_000_001  # allowed
MALLORY = 990_000_000_000_000_009  # not allowed
DM = 500_000_000_000_000_001  # Alice's DM channel with the bot
GUILD = 600_000_000_000_000_001
TEXT = 610_000_000_000_000_001  # a text channel in GUILD
THREAD = 620_000_000_000_000_001  # a thread under TEXT

Ingest = Callable[..., Awaitable[IngestResult]]


def ledger_ingest(ledger: Ledger) -> Ingest:
    """The bridge's routed ingest, reduced to what a test needs: one agent, ``demo``."""

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> IngestResult:
        return await ledger.ingest(
            "discord", conversation, sender, text, key=key, agent="demo", priority=priority,
            meta=meta,
        )  # fmt: skip

    return ingest


async def asked_in(ledger: Ledger, conversation: int, key: str = "asker") -> str:
    """A real permission request asked in ``conversation``; its short id (a click naming
    none, or another conversation's, is dropped as stale)."""
    asker = await ledger.ingest(
        "discord", str(conversation), str(ALICE), "go", key=key, agent="demo"
    )
    req = await ledger.open_permission(asker.message.id, "demo", "Bash", "ls", 1e12)
    return req.short_id
