"""The real outbox relay running in a test, woken by the ledger, reading agents' files.

Shipped so plugin tests (and the contract suite) drive their channel's ``deliver`` and
``deliver_file`` the way the bridge does, instead of calling them by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from agentbridge.config import OutboxConfig
from agentbridge.delivery.outfiles import FileRoots
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.store import LedgerStore
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import Channel
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until

__all__ = ["FAST", "SETTLED", "running_relay", "settled"]

#: short backoff, a few retries: a test sees every outcome within seconds
FAST = OutboxConfig(backoff=(0.05,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)
#: the states a reply stops in (``unknown`` included: nothing makes it due again)
SETTLED = (OutboxState.SENT, OutboxState.UNKNOWN, OutboxState.FAILED)


@contextlib.asynccontextmanager
async def running_relay(
    ledger: LedgerStore,
    channels: Channel | Mapping[str, Channel],
    *,
    cwds: Mapping[str, Path] | None = None,
    state_dir: Path | None = None,
    config: OutboxConfig = FAST,
    reconcile_every: float = 0.1,
) -> AsyncIterator[OutboxRelay]:
    """The relay's loop in a task; files may be sent from ``cwds`` (agent → its cwd) and
    ``<state_dir>/outfiles``. Cancelled on exit."""
    named = {channels.name: channels} if isinstance(channels, Channel) else dict(channels)
    roots = FileRoots(dict(cwds or {}), state_dir)
    relay = OutboxRelay(ledger, named, config, files=roots)
    relay.reconcile_every = reconcile_every
    unsubscribe = ledger.on_change(lambda kind, _id: relay.poke() if kind == "outbox" else None)
    task = asyncio.create_task(relay.run(), name="test-outbox-relay")
    try:
        yield relay
    finally:
        unsubscribe()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settled(
    ledger: LedgerStore,
    outbox_id: int,
    states: tuple[OutboxState, ...] = SETTLED,
    timeout: float = 20.0,
) -> OutboxItem:
    """The reply once it is in one of ``states`` (``WaitTimeout`` at the deadline)."""

    async def check() -> OutboxItem | None:
        item = await ledger.get_reply(outbox_id)
        return item if item.state in states else None

    found = await async_wait_until(check, timeout=timeout, what=f"reply {outbox_id} in {states}")
    assert found is not None  # async_wait_until returns only a truthy value
    return found
