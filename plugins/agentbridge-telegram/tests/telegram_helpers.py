"""Shared by the Telegram tests (a unique module name: no clash with the root ``tests/``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger

ALICE = 111  # allowed
MALLORY = 999  # not allowed
CHAT = 111  # a private chat's id is the user's id

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
            "telegram", conversation, sender, text, key=key, agent="demo", priority=priority,
            meta=meta,
        )  # fmt: skip

    return ingest
