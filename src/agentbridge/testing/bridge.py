"""A real ledger and the ``ChannelContext`` the bridge would hand a channel, for tests.

Used by the contract suite and by channel tests that need no harness. Kept out of
``contract.py`` so importing these helpers does not import the pytest plugin (whose asserts
pytest rewrites only when it imports the plugin module first).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentbridge.agent import attachments as files
from agentbridge.ledger.store import IngestResult, LedgerStore, open_ledger
from agentbridge.models import Message
from agentbridge.plugin.protocols import Attachment, ChannelContext


@dataclass
class ContractBridge:
    """The bridge side of a contract test: a real ledger and the context handed to the channel.

    ``commits`` holds ``(key, time.monotonic())`` for every ingest, taken when the ledger's
    commit returned; ``fail_ingest`` makes the next ingests raise, as a full disk would.
    """

    ledger: LedgerStore
    ctx: ChannelContext
    commits: list[tuple[str | None, float]] = field(default_factory=list)
    fail_ingest: bool = False


@asynccontextmanager
async def contract_bridge(
    channel_name: str,
    state_dir: Path,
    *,
    default_agent: str = "demo",
    config: dict[str, Any] | None = None,
) -> AsyncIterator[ContractBridge]:
    """Open a ledger in ``state_dir`` and build the ``ChannelContext`` the bridge would pass.

    ``ingest`` has the supervisor's signature (``agent=`` overrides routing, as schedules do).
    """
    ledger = await open_ledger(state_dir / "contract-ledger.db")
    bridge: ContractBridge | None = None

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
        assert bridge is not None
        if bridge.fail_ingest:
            raise OSError("contract: the ledger is unavailable (simulated)")
        staged = files.stage(state_dir / "workspace", attachments) if attachments else None
        result = await ledger.ingest(
            channel_name,
            conversation,
            sender,
            text,
            key=key,
            agent=agent or default_agent,
            priority=priority,
            meta={**(meta or {}), "attachments": staged.meta} if staged else meta,
        )
        if staged is not None and result.created:
            files.place(staged.cwd, staged.token, result.message.id)
        bridge.commits.append((key, time.monotonic()))
        return result

    ctx = ChannelContext(
        name=channel_name,
        config=dict(config or {}),
        ingest=ingest,
        state_dir=state_dir,
        ledger=ledger,
    )
    bridge = ContractBridge(ledger=ledger, ctx=ctx)
    try:
        yield bridge
    finally:
        await ledger.close()


async def complete_next(
    ledger: LedgerStore, reply: str, *, agent: str = "demo", owner: str = "contract"
) -> Message:
    """Play the agent's part through the real ledger API: claim, submit, accept, complete."""
    msg = await ledger.claim_next(agent, owner, 60.0)
    assert msg is not None, f"no queued message for agent {agent!r}"
    await ledger.mark_submitted(msg.id, msg.fence)
    await ledger.mark_accepted(msg.id, msg.fence)
    return await ledger.complete(msg.id, msg.fence, reply)
