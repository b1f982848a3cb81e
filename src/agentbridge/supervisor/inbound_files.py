"""Inbound attachments around the ledger commit: stage (fsync) → commit → place.

Kept out of ``up.py``: ``Supervisor._ingest_for`` calls ``stage_for`` before its
``ledger.ingest`` and ``settle`` after it; the order is the durability argument of
``agent/attachments.py`` (files on disk before the ack, never a row pointing at nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentbridge.agent import attachments
from agentbridge.runtimes.common import resolve_cwd

if TYPE_CHECKING:
    from agentbridge.config import Config
    from agentbridge.ledger.store import IngestResult
    from agentbridge.plugin.protocols import Attachment

__all__ = ["settle", "stage_for"]


def stage_for(
    config: Config, agent: str, items: Sequence[Attachment], meta: dict[str, Any] | None
) -> tuple[attachments.Staged | None, dict[str, Any] | None]:
    """Write the files under the agent's cwd; return the stage and the meta naming it.

    Raises ``AttachmentTooLarge`` (the channel tells the sender) before anything is stored.
    """
    if not items:
        return None, meta
    cfg = config.agents[agent]
    cwd = resolve_cwd(cfg, config.state_dir / "agents" / agent)
    staged = attachments.stage(cwd, items, config.attachments.max_bytes)
    return staged, {**(meta or {}), "attachments": staged.meta}


def settle(staged: attachments.Staged | None, result: IngestResult) -> None:
    """After the commit: a new message gets its dir; a redelivery drops the copy just made."""
    if staged is None:
        return
    if result.created:
        attachments.place(staged.cwd, staged.token, result.message.id)
    else:
        attachments.discard_stage(staged)
