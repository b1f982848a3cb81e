"""Benchmark of the Lark channel's inbound path: event pushed → ledger commit → ack frame.

Run: ``.venv/bin/python scripts/bench_lark.py [N]``. The real lark-oapi long connection
against the fake Lark on 127.0.0.1, a real SQLite ledger. The floor, measured in the same
run on a ledger file of its own, is the bare ``Ledger.ingest`` of N messages: the ratio says
what the long connection, the SDK's thread and the hop to the bridge's loop add to the commit
that has to happen anyway.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentbridge_lark import LarkChannel, parse_settings
from agentbridge_lark.testing import APP_ID, APP_SECRET, FakeLark

from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing import async_wait_until

ALICE = "ou_alice"
DM = "oc_dm_alice"


def p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(int(len(ordered) * 0.95) - 1, 0)]


async def floor(n: int, folder: Path) -> list[float]:
    """ms per bare ledger ingest (the commit every message needs)."""
    ledger = await Ledger.open(folder / "floor.db")
    samples = []
    try:
        for i in range(n):
            t = time.perf_counter()
            await ledger.ingest("lark", DM, ALICE, f"m{i}", key=f"om_{i}", agent="demo")
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        await ledger.close()
    return samples


async def through_lark(n: int, folder: Path) -> tuple[list[float], float]:
    """ms from push to ack per event (one at a time), and seconds for n pushed at once."""
    secret = folder / "secret"
    secret.write_text(APP_SECRET)
    os.chmod(secret, 0o600)
    ledger = await Ledger.open(folder / "lark.db")

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, object] | None = None,
        priority: int = 0,
    ) -> object:
        return await ledger.ingest("lark", conversation, sender, text, key=key, agent="demo")

    async with FakeLark() as fake:
        table = {
            "app_id": APP_ID,
            "app_secret_file": str(secret),
            "allowed_users": [ALICE],
            "domain": fake.base_url,
            "catch_up": False,
        }
        channel = LarkChannel(parse_settings(table), env={})
        ctx = ChannelContext("lark", table, ingest, folder / "state", ledger=ledger)
        await channel.start(ctx)
        try:

            async def up() -> bool:
                return bool(channel.status()["connected"])

            await async_wait_until(up, timeout=30, what="long connection")
            samples = []
            for i in range(n):
                t = time.perf_counter()
                event = fake.event_for(await fake.user_message(DM, ALICE, f"one {i}"))
                while not event.ack_times:
                    await asyncio.sleep(0.0005)
                samples.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            ids = [await fake.user_message(DM, ALICE, f"many {i}") for i in range(n)]
            events = [fake.event_for(m) for m in ids]
            while not all(e.ack_times for e in events):
                await asyncio.sleep(0.001)
            burst = time.perf_counter() - t
            rows = await ledger.list_messages(channel="lark", limit=10 * n)
            assert len(rows) == 2 * n, len(rows)
        finally:
            await channel.stop()
            await ledger.close()
    return samples, burst


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = await floor(n, folder)
        lark, burst = await through_lark(n, folder)
    f50, f95 = p50_p95(bare)
    l50, l95 = p50_p95(lark)
    print(f"floor  Ledger.ingest          p50 {f50:7.2f} ms  p95 {f95:7.2f} ms  (n={n})")
    print(f"lark   push → commit → ack    p50 {l50:7.2f} ms  p95 {l95:7.2f} ms")
    print(f"ratio  p50 {l50 / f50:5.1f}x the bare commit")
    print(
        f"burst  {n} events pushed at once: all acked in {burst:.2f} s "
        f"({n / burst:.0f}/s; bare commits {1000 * n / sum(bare):.0f}/s)"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
