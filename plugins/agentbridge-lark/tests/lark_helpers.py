"""Shared by the Lark tests (a unique module name: no clash with the root ``tests/``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger

ALICE = "ou_alice"  # allowed
MALLORY = "ou_mallory"  # not allowed
DM = "oc_dm_alice"
GROUP = "oc_group"

Ingest = Callable[..., Awaitable[IngestResult]]


def ledger_ingest(ledger: Ledger, commits: list[str] | None = None) -> Ingest:
    """The bridge's routed ingest reduced to one agent, ``demo``."""

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> IngestResult:
        result = await ledger.ingest(
            "lark",
            conversation,
            sender,
            text,
            key=key,
            agent="demo",
            priority=priority,
            meta=meta,
        )
        if commits is not None:
            commits.append(str(key))
        return result

    return ingest


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return path


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it. Cancelled again until it ends: on Python 3.11 an
    ``asyncio.wait_for`` whose inner wait completes in the same step (the outbox relay's
    ``wake.wait()`` right after a poke) swallows the cancellation."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1)
