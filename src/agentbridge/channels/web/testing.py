"""Run the web console standalone over a real ledger: for tests, benchmarks and UI work.

The bridge normally builds the ``ChannelContext``; here a tiny one stands in for it: ``ingest``
stores straight into the ledger for one agent (no routing), ``status`` wraps ``ledger.stats()``
with the fields the supervisor adds (health, state, restarts, detail).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agentbridge.agent import attachments as files
from agentbridge.channels.web.channel import WebChannel
from agentbridge.config import ConsoleConfig
from agentbridge.delivery.outfiles import FileRoots
from agentbridge.ledger.store import IngestResult, LedgerStore
from agentbridge.plugin.protocols import Attachment, ChannelContext

#: what ``chromium.launch(args=…)`` needs to run headless in a container without a profile
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def standalone_context(
    ledger: LedgerStore,
    state_dir: Path,
    agent: str = "demo",
    channel: str = "web",
    extras: dict[str, Any] | None = None,
) -> ChannelContext:
    """A ``ChannelContext`` whose ingest stores for ``agent`` and whose status reads stats."""
    default_agent = agent

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
        staged = files.stage(state_dir / "workspace", attachments) if attachments else None
        result = await ledger.ingest(
            channel,
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
        return result

    async def status() -> dict[str, Any]:
        stats: dict[str, Any] = await ledger.stats()
        agents: dict[str, Any] = {
            default_agent: {
                "queued": 0,
                "in_flight": 0,
                "quarantined": 0,
                "stale": 0,
                "oldest_queued_age": None,
            }
        }
        for name, counts in stats["agents"].items():
            agents.setdefault(name, {}).update(counts)
        for entry in agents.values():
            entry.setdefault("health", "healthy")
            entry.setdefault("runtime", "demo")
            entry.setdefault("restarts", 0)
            entry.setdefault("detail", "")
        stats["agents"] = agents
        return stats

    return ChannelContext(
        name=channel,
        config={},
        ingest=ingest,
        state_dir=state_dir,
        ledger=ledger,
        status=status,
        extras=dict(extras or {}),  # e.g. a permission relay's answer (``permissions``)
    )


@asynccontextmanager
async def running_console(
    ledger: LedgerStore,
    state_dir: Path,
    agent: str = "demo",
    console: ConsoleConfig | None = None,
    extras: dict[str, Any] | None = None,
) -> AsyncIterator[WebChannel]:
    """A started ``WebChannel`` on an ephemeral port; stopped on exit. The agent's files
    may be downloaded from its cwd here, ``state_dir/workspace``."""
    roots = FileRoots({agent: state_dir / "workspace"}, state_dir)
    channel = WebChannel(console or ConsoleConfig(port=0), roots)
    await channel.start(standalone_context(ledger, state_dir, agent, extras=extras))
    try:
        yield channel
    finally:
        await channel.stop()
