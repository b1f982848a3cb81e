"""Shared by the Slack tests (a unique module name: no clash with the root ``tests/``)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from agentbridge.agent import attachments as core_files
from agentbridge.ledger.sqlite import IngestResult, Ledger
from agentbridge.plugin.protocols import Attachment

ALICE = "UALICE"  # allowed
MALLORY = "UMALLORY"  # not allowed
DM = "D0ALICE"
CHAN = "C0GENERAL"

Ingest = Callable[..., Awaitable[IngestResult]]


def ledger_ingest(
    ledger: Ledger,
    commits: list[tuple[str, float]] | None = None,
    cwd: Path | None = None,
    max_bytes: int = core_files.DEFAULT_MAX_BYTES,
) -> Ingest:
    """The bridge's routed ingest reduced to one agent, ``demo``; records commit times.
    Files are staged under ``cwd`` by the core's own code, as the supervisor does."""

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        agent: str | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> IngestResult:
        staged = None
        if attachments:
            assert cwd is not None, "this test ingest takes no files"
            staged = core_files.stage(cwd, attachments, max_bytes)
            meta = {**(meta or {}), "attachments": staged.meta}
        result = await ledger.ingest(
            "slack", conversation, sender, text, key=key, agent="demo", priority=priority,
            meta=meta,
        )  # fmt: skip
        if staged is not None and result.created:
            core_files.place(staged.cwd, staged.token, result.message.id)
        if commits is not None:
            commits.append((str(key), time.monotonic()))
        return result

    return ingest


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return path


async def open_request(ledger: Ledger, conversation: str) -> str:
    """A real permission request asked in ``conversation`` (by its first message there, or a
    new one); its short id. A click naming none, or another conversation's, is dropped."""
    mine = [
        m for m in await ledger.list_messages(channel="slack") if m.conversation == conversation
    ]
    if mine:
        asker = mine[0]
    else:
        made = await ledger.ingest("slack", conversation, ALICE, "go", key=f"asker:{conversation}",
                                   agent="demo")  # fmt: skip
        asker = made.message
    return (await ledger.open_permission(asker.id, "demo", "Bash", "ls", 1e12)).short_id
