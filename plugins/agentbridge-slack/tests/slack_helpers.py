"""Shared by the Slack tests (a unique module name: no clash with the root ``tests/``)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger

ALICE = "UALICE"  # allowed
MALLORY = "UMALLORY"  # not allowed
DM = "D0ALICE"
CHAN = "C0GENERAL"

Ingest = Callable[..., Awaitable[IngestResult]]


def ledger_ingest(ledger: Ledger, commits: list[tuple[str, float]] | None = None) -> Ingest:
    """The bridge's routed ingest reduced to one agent, ``demo``; records commit times."""

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> IngestResult:
        result = await ledger.ingest(
            "slack", conversation, sender, text, key=key, agent="demo", priority=priority,
            meta=meta,
        )  # fmt: skip
        if commits is not None:
            commits.append((str(key), time.monotonic()))
        return result

    return ingest


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return path
