#!/usr/bin/env python3
"""Benchmark the ledger through its public API, on a real file, for both synchronous modes.

Why: the ingress ack is the ledger's commit, so ingest throughput bounds what a channel can
acknowledge per second, and claim/complete latency bounds how fast the dispatcher turns over.
Prints msgs/s for sequential, concurrent (group commit) and batched ingests, and p50/p99 of
ingest, claim_next and complete. Runs in well under a minute.

Usage: .venv/bin/python scripts/bench_ledger.py [--dir DIR] [--seconds-per-case S]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentbridge.ledger import Ledger, NewMessage

GOAL_SINGLE = 5_000
GOAL_BATCH = 20_000


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


async def _timed_loop(seconds: float, step: Callable[[int], Awaitable[None]]) -> tuple[int, float]:
    """Run ``step(i)`` back to back for ``seconds``; return (count, elapsed)."""
    start = time.perf_counter()
    deadline = start + seconds
    n = 0
    while time.perf_counter() < deadline:
        await step(n)
        n += 1
    return n, time.perf_counter() - start


async def bench_mode(directory: Path, mode: str, seconds: float) -> dict[str, float]:
    """All cases for one synchronous mode, each on a fresh file."""
    out: dict[str, float] = {}

    # sequential single-message ingests, each awaited before the next (one commit each)
    async with await Ledger.open(directory / f"seq-{mode}.db", synchronous=mode) as led:
        lat: list[float] = []

        async def one(i: int) -> None:
            t = time.perf_counter()
            await led.ingest("bench", f"c{i % 50}", "u", f"message {i}", key=f"k{i}")
            lat.append(time.perf_counter() - t)

        n, elapsed = await _timed_loop(seconds, one)
        out["sequential"] = n / elapsed
        out["ingest_p50"] = _pct(lat, 0.5)
        out["ingest_p99"] = _pct(lat, 0.99)

    # 16 concurrent producers on one Ledger: the group-commit path
    async with await Ledger.open(directory / f"conc-{mode}.db", synchronous=mode) as led:
        producers = 16
        counts = [0] * producers
        clat: list[float] = []
        deadline = time.perf_counter() + seconds

        async def producer(p: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await led.ingest("bench", f"c{p}", "u", f"message {p}/{i}", key=f"k{p}/{i}")
                clat.append(time.perf_counter() - t)
                i += 1
            counts[p] = i

        start = time.perf_counter()
        await asyncio.gather(*(producer(p) for p in range(producers)))
        out["concurrent16"] = sum(counts) / (time.perf_counter() - start)
        out["conc_ingest_p50"] = _pct(clat, 0.5)
        out["conc_ingest_p99"] = _pct(clat, 0.99)

    # batches of 100 through ingest_many (one transaction, one fsync per batch)
    async with await Ledger.open(directory / f"batch-{mode}.db", synchronous=mode) as led:

        async def batch(i: int) -> None:
            await led.ingest_many(
                [
                    NewMessage("bench", f"c{j % 50}", "u", f"message {i}/{j}", key=f"k{i}/{j}")
                    for j in range(100)
                ]
            )

        n, elapsed = await _timed_loop(seconds, batch)
        out["batched100"] = n * 100 / elapsed

    # claim_next / complete latency: many conversations queued, one claim + complete at a time
    async with await Ledger.open(directory / f"claim-{mode}.db", synchronous=mode) as led:
        total = 3000
        for b in range(0, total, 100):
            await led.ingest_many(
                [
                    NewMessage("bench", f"c{j % 200}", "u", f"m{j}", key=f"k{j}")
                    for j in range(b, b + 100)
                ]
            )
        claim_lat: list[float] = []
        complete_lat: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            msg = await led.claim_next("default", "bench-host", 60.0)
            claim_lat.append(time.perf_counter() - t)
            if msg is None:
                break
            t = time.perf_counter()
            await led.complete(msg.id, msg.fence, f"reply to {msg.id}")
            complete_lat.append(time.perf_counter() - t)
        out["claim_p50"] = _pct(claim_lat, 0.5)
        out["claim_p99"] = _pct(claim_lat, 0.99)
        out["complete_p50"] = _pct(complete_lat, 0.5)
        out["complete_p99"] = _pct(complete_lat, 0.99)
        out["claim_complete_pairs"] = float(len(complete_lat))
    return out


def _verdict(value: float, goal: int) -> str:
    return "MET" if value >= goal else "missed"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=None, help="where the test files go")
    parser.add_argument("--seconds-per-case", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for mode in ("full", "normal"):
            r = await bench_mode(Path(tmp), mode, args.seconds_per_case)
            single = max(r["sequential"], r["concurrent16"])
            print(f"synchronous={mode.upper()}")
            print(f"  ingest sequential      {r['sequential']:>9,.0f} msgs/s")
            print(
                f"  ingest 16 concurrent   {r['concurrent16']:>9,.0f} msgs/s"
                f"  (group commit; p50 {r['conc_ingest_p50']:.2f} ms,"
                f" p99 {r['conc_ingest_p99']:.2f} ms)"
            )
            print(f"  ingest_many x100       {r['batched100']:>9,.0f} msgs/s")
            print(
                f"  latency ms  ingest p50 {r['ingest_p50']:.3f} p99 {r['ingest_p99']:.3f}"
                f" | claim_next p50 {r['claim_p50']:.3f} p99 {r['claim_p99']:.3f}"
                f" | complete p50 {r['complete_p50']:.3f} p99 {r['complete_p99']:.3f}"
                f"  ({r['claim_complete_pairs']:.0f} claim+complete pairs)"
            )
            print(
                f"  goals: single-message >= {GOAL_SINGLE:,}/s {_verdict(single, GOAL_SINGLE)}"
                f" (sequential {_verdict(r['sequential'], GOAL_SINGLE)},"
                f" concurrent {_verdict(r['concurrent16'], GOAL_SINGLE)});"
                f" batched >= {GOAL_BATCH:,}/s {_verdict(r['batched100'], GOAL_BATCH)}"
            )


if __name__ == "__main__":
    asyncio.run(main())
