"""Telegram channel latency against the fake Bot API (loopback HTTP, real ledger, real bridge).

    .venv/bin/python plugins/agentbridge-telegram/bench_telegram.py [--n 30] [--no-bridge]

1. channel only: update queued on the fake server → ``ctx.ingest`` committed (ledger FULL
   sync), and ``deliver()`` of a short reply → Telegram's answer. No agent involved.
2. the whole bridge (skipped with ``--no-bridge``): ``agentbridge up`` in a subprocess with the
   demo agent in tmux and ``[channels.telegram]`` pointed at the fake server; round trip =
   update queued → the agent's reply arrives as ``sendMessage`` at the fake server.

Prints one table; the JSON line at the end is for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_telegram import TelegramChannel, parse_settings
from agentbridge_telegram.testing import FakeBotApi

USER = 111


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.002)


async def channel_only(root: Path, n: int) -> dict[str, list[float]]:
    """Ingest and deliver latency of the channel alone."""
    ingest_at: dict[str, float] = {}
    async with FakeBotApi() as fake:
        ledger = await Ledger.open(root / "bench.db")

        async def ingest(conversation: str, sender: str, text: str, **kw: Any) -> IngestResult:
            result = await ledger.ingest(
                "telegram", conversation, sender, text, key=kw.get("key"), agent="demo"
            )
            ingest_at[text] = time.monotonic()
            return result

        channel = TelegramChannel(
            parse_settings({"allowed_users": [USER], "base_url": fake.base_url}),
            env={"AGENTBRIDGE_TELEGRAM_TOKEN": fake.token},
        )
        await channel.start(ChannelContext("telegram", {}, ingest, root))
        ingests: list[float] = []
        delivers: list[float] = []
        for i in range(n):
            text = f"bench {i}"
            start = time.monotonic()
            fake.add_message(chat_id=USER, user_id=USER, text=text)
            await wait_for(lambda t=text: t in ingest_at, 10, "ingest")  # type: ignore[misc]
            ingests.append(ingest_at[text] - start)
            item = await ledger.enqueue_reply("telegram", str(USER), f"reply {i}", key=f"r{i}")
            start = time.monotonic()
            await channel.deliver(item)
            delivers.append(time.monotonic() - start)
        await channel.stop()
        await ledger.close()
    return {"ingest (update → committed)": ingests, "deliver (sendMessage)": delivers}


async def whole_bridge(root: Path, n: int) -> dict[str, list[float]]:
    """Round trips through ``agentbridge up`` with the demo agent."""
    async with FakeBotApi() as fake:
        home, state = root / "home", root / "state"
        home.mkdir()
        socket = f"abtg-{uuid.uuid4().hex[:8]}"
        config = root / "config.toml"
        config.write_text(
            f'state_dir = "{state}"\ntmux_socket = "{socket}"\n'
            f'[ledger]\npath = "{state / "ledger.db"}"\n'
            "[console]\nenabled = false\n"
            '[agents.demo]\nruntime = "demo"\n'
            f'[channels.telegram]\nbase_url = "{fake.base_url}"\nallowed_users = [{USER}]\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
        env.update(
            HOME=str(home),
            AGENTBRIDGE_CONFIG=str(config),
            AGENTBRIDGE_TELEGRAM_TOKEN=fake.token,
            AGENTBRIDGE_LOAD_PLUGINS="telegram",
        )
        log = (root / "bridge.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentbridge.cli", "up", env=env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        trips: list[float] = []
        try:
            # warm-up: the agent launches and answers once
            fake.add_message(chat_id=USER, user_id=USER, text="warm up")
            await wait_for(lambda: any("warm up" in s.visible for s in fake.sent), 60, "warm-up")
            for i in range(n):
                text = f"round trip {i}"
                start = time.monotonic()
                fake.add_message(chat_id=USER, user_id=USER, text=text)
                await wait_for(lambda t=text: any(t in s.visible for s in fake.sent), 30, text)  # type: ignore[misc]
                at = next(s.at for s in fake.sent if text in s.visible)
                trips.append(at - start)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            kill = await asyncio.create_subprocess_exec(
                "tmux", "-L", socket, "kill-server", stderr=asyncio.subprocess.DEVNULL
            )  # fmt: skip
            await kill.wait()
        bridge_log = (root / "bridge.log").read_text(errors="replace")
        problems = [ln for ln in bridge_log.splitlines() if "telegram" in ln and "ERROR" in ln]
        for line in problems[:5]:
            print("bridge log:", line, file=sys.stderr)
        print(
            f"receipts seen by the fake server: {len(fake.reactions)} reactions, "
            f"{len(fake.actions)} chat actions",
            file=sys.stderr,
        )
    return {"bridge round trip (update → reply sent)": trips}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--no-bridge", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results.update(await channel_only(Path(tmp), args.n * 5))
        if not args.no_bridge:
            bridge_root = Path(tmp) / "bridge"
            bridge_root.mkdir()
            results.update(await whole_bridge(bridge_root, args.n))
    print(f"{'measure':45} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9}")
    summary = {}
    for name, values in results.items():
        row = {
            "n": len(values),
            "p50_ms": round(pct(values, 0.5), 2),
            "p95_ms": round(pct(values, 0.95), 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 2),
        }
        summary[name] = row
        print(f"{name:45} {row['n']:>5} {row['p50_ms']:>9} {row['p95_ms']:>9} {row['mean_ms']:>9}")
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
