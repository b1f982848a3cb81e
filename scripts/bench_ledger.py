#!/usr/bin/env python3
"""Benchmark the ledger through its public API, on a real file, against the disk's own floor.

Why: the ingress ack is the ledger's commit, so ingest throughput bounds what a channel can
acknowledge per second, and claim/complete latency bounds how fast the dispatcher turns over.
Timing on a shared box is noisy, so the floor — raw stdlib ``sqlite3`` with the ledger's own
PRAGMAs and schema on the same file system, one INSERT per committed transaction — is measured
in the same run, in slices alternating with sequential ingest, over a few rounds; medians of
the rounds are printed, each with its ratio to the floor. Cases: sequential ``ingest`` (each
awaited before the next), 8 and 16 concurrent producers (group commit), ``ingest_many`` batches
of 100, and p50/p99 of ingest, claim_next and complete.

Usage: .venv/bin/python scripts/bench_ledger.py [--dir DIR] [--seconds-per-case S] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentbridge.ledger.base import _configure, text_hash
from agentbridge.ledger.sqlite import Ledger, NewMessage

GOAL_SEQUENTIAL_RATIO = 0.8  # sequential ingest / floor, synchronous=FULL
GOAL_CONCURRENT8 = 10_000  # msgs/s, 8 producers, synchronous=FULL
GOAL_BATCH = 20_000  # msgs/s, ingest_many x100

_FLOOR_INSERT = (
    "INSERT INTO messages (channel, conversation, sender, platform_id, text, text_hash, agent,"
    " priority, state, created_at, updated_at) VALUES (?,?,?,?,?,?,'default',0,'queued',?,?)"
)


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


class Floor:
    """Raw ``sqlite3``, same PRAGMAs and schema as the ledger: one INSERT per transaction."""

    def __init__(self, path: Path, mode: str) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        _configure(self.conn, mode, str(path))  # WAL, synchronous, fullfsync on macOS, schema
        self.n = 0

    def run(self, seconds: float) -> tuple[int, float]:
        """Insert-and-commit back to back for ``seconds``; return (count, elapsed)."""
        start = time.perf_counter()
        deadline = start + seconds
        first = self.n
        while time.perf_counter() < deadline:
            n = self.n
            text = f"message {n}"
            now = time.time()
            row = ("bench", f"c{n % 50}", "u", f"k{n}", text, text_hash(text), now, now)
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(_FLOOR_INSERT, row)
            self.conn.execute("COMMIT")
            self.n += 1
        return self.n - first, time.perf_counter() - start


async def floor_and_sequential(
    directory: Path, mode: str, seconds: float, slices: int = 6
) -> dict[str, float]:
    """The floor and sequential ``ingest`` (each awaited before the next), in alternating
    slices on two open files, so both see the same disk and the same neighbours."""
    fl = Floor(directory / f"floor-{mode}.db", mode)
    counts = {"floor": 0, "seq": 0}
    times = {"floor": 0.0, "seq": 0.0}
    lat: list[float] = []
    try:
        async with await Ledger.open(directory / f"seq-{mode}.db", synchronous=mode) as led:

            async def one(i: int) -> None:
                i += counts["seq"]
                t = time.perf_counter()
                await led.ingest("bench", f"c{i % 50}", "u", f"message {i}", key=f"k{i}")
                lat.append(time.perf_counter() - t)

            for _ in range(slices):
                n, elapsed = fl.run(seconds / slices)
                counts["floor"] += n
                times["floor"] += elapsed
                n, elapsed = await _timed_loop(seconds / slices, one)
                counts["seq"] += n
                times["seq"] += elapsed
    finally:
        fl.conn.close()
    return {
        "floor": counts["floor"] / times["floor"],
        "seq": counts["seq"] / times["seq"],
        "seq_p50": _pct(lat, 0.5),
        "seq_p99": _pct(lat, 0.99),
    }


async def concurrent(path: Path, mode: str, seconds: float, producers: int) -> dict[str, float]:
    """``producers`` tasks ingesting flat out on one Ledger: the group-commit path."""
    async with await Ledger.open(path, synchronous=mode) as led:
        counts = [0] * producers
        lat: list[float] = []
        deadline = time.perf_counter() + seconds

        async def producer(p: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await led.ingest("bench", f"c{p}", "u", f"message {p}/{i}", key=f"k{p}/{i}")
                lat.append(time.perf_counter() - t)
                i += 1
            counts[p] = i

        start = time.perf_counter()
        await asyncio.gather(*(producer(p) for p in range(producers)))
        rate = sum(counts) / (time.perf_counter() - start)
        return {"rate": rate, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99)}


async def batched(path: Path, mode: str, seconds: float) -> dict[str, float]:
    """Batches of 100 through ``ingest_many`` (one transaction, one fsync per batch)."""
    async with await Ledger.open(path, synchronous=mode) as led:

        async def batch(i: int) -> None:
            await led.ingest_many(
                [
                    NewMessage("bench", f"c{j % 50}", "u", f"message {i}/{j}", key=f"k{i}/{j}")
                    for j in range(100)
                ]
            )

        n, elapsed = await _timed_loop(seconds, batch)
        return {"rate": n * 100 / elapsed}


async def claim_complete(path: Path, mode: str, seconds: float) -> dict[str, float]:
    """claim_next / complete latency: many conversations queued, one pair at a time."""
    async with await Ledger.open(path, synchronous=mode) as led:
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
        return {
            "claim_p50": _pct(claim_lat, 0.5),
            "claim_p99": _pct(claim_lat, 0.99),
            "complete_p50": _pct(complete_lat, 0.5),
            "complete_p99": _pct(complete_lat, 0.99),
            "pairs": float(len(complete_lat)),
        }


async def one_round(directory: Path, mode: str, seconds: float) -> dict[str, float]:
    """Every case once, each on a fresh file."""
    out = await floor_and_sequential(directory, mode, seconds)
    out["seq_ratio"] = out["seq"] / out["floor"]
    for producers in (8, 16):
        c = await concurrent(directory / f"c{producers}-{mode}.db", mode, seconds, producers)
        out.update({f"c{producers}": c["rate"], f"c{producers}_p50": c["p50"]})
        out[f"c{producers}_p99"] = c["p99"]
    out["batch"] = (await batched(directory / f"batch-{mode}.db", mode, seconds))["rate"]
    out.update(await claim_complete(directory / f"claim-{mode}.db", mode, seconds))
    return out


def _verdict(ok: bool) -> str:
    return "MET" if ok else "missed"


def report(mode: str, rounds: list[dict[str, float]]) -> None:
    m = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    fl = m["floor"]
    spread = ", ".join(f"{r['floor']:,.0f}" for r in rounds)
    seq_rounds = ", ".join(f"{r['seq']:,.0f} = {r['seq_ratio']:.2f}x" for r in rounds)
    print(f"synchronous={mode.upper()}  (medians of {len(rounds)} interleaved rounds)")
    print(f"  floor: raw sqlite3, 1 INSERT/commit {fl:>9,.0f} msgs/s  (rounds: {spread})")
    print(
        f"  ingest sequential          {m['seq']:>9,.0f} msgs/s  {m['seq_ratio']:5.2f}x floor"
        f"  (rounds: {seq_rounds})"
    )
    for p in (8, 16):
        print(
            f"  ingest {p:>2} concurrent       {m[f'c{p}']:>9,.0f} msgs/s  {m[f'c{p}'] / fl:5.2f}x"
            f" floor  (group commit; p50 {m[f'c{p}_p50']:.2f} ms, p99 {m[f'c{p}_p99']:.2f} ms)"
        )
    print(f"  ingest_many x100           {m['batch']:>9,.0f} msgs/s  {m['batch'] / fl:5.2f}x floor")
    print(
        f"  latency ms  ingest p50 {m['seq_p50']:.3f} p99 {m['seq_p99']:.3f}"
        f" | claim_next p50 {m['claim_p50']:.3f} p99 {m['claim_p99']:.3f}"
        f" | complete p50 {m['complete_p50']:.3f} p99 {m['complete_p99']:.3f}"
        f"  ({m['pairs']:.0f} claim+complete pairs)"
    )
    if mode == "full":
        print(
            f"  goals: sequential >= {GOAL_SEQUENTIAL_RATIO}x floor"
            f" {_verdict(m['seq_ratio'] >= GOAL_SEQUENTIAL_RATIO)};"
            f" 8 concurrent >= {GOAL_CONCURRENT8:,}/s {_verdict(m['c8'] >= GOAL_CONCURRENT8)};"
            f" batched >= {GOAL_BATCH:,}/s {_verdict(m['batch'] >= GOAL_BATCH)}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=None, help="where the test files go")
    parser.add_argument("--seconds-per-case", type=float, default=1.2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"full": [], "normal": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.rounds):
            for mode, rounds in results.items():
                where = Path(tmp) / f"round{r}"
                where.mkdir(exist_ok=True)
                rounds.append(await one_round(where, mode, args.seconds_per_case))
    for mode, rounds in results.items():
        report(mode, rounds)


if __name__ == "__main__":
    asyncio.run(main())
