#!/usr/bin/env python3
"""Benchmark the PostgreSQL ledger through its public API against the server's own floor.

Why: with PostgreSQL the ingress ack is a commit on a server, so ingest throughput and the
time from an ingest on one store to its claim on another (woken by LISTEN/NOTIFY, as another
supervisor's dispatcher would be) bound what a fleet can acknowledge and turn over. The floor,
measured in the same run on the same server, is raw psycopg: one ``INSERT`` of the same row
per committed transaction (autocommit), on as many connections as there are producers.
Rounds interleave the cases; medians of the rounds are printed with each ratio to its floor.

A private server is started (``agentbridge.testing.postgres``), durable as shipped
(``fsync=on``, ``synchronous_commit=on``), unless ``--admin-url`` names one.

Usage: .venv/bin/python scripts/bench_ledger_pg.py [--seconds-per-case S] [--rounds N]
       [--latency-samples N] [--admin-url postgresql://…/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import psycopg

from agentbridge.kinds import ChangeKind
from agentbridge.ledger.base import text_hash
from agentbridge.ledger.postgres.core import PostgresLedger
from agentbridge.testing.postgres import PostgresServer, running_postgres

GOAL_CLAIM_P50_MS = 10.0  # issue 11: ingest → claimed on another node, p50 on loopback
_FLOOR_INSERT = (
    "INSERT INTO messages (channel, conversation, sender, platform_id, text, text_hash, agent,"
    " priority, state, created_at, updated_at) VALUES (%s,%s,%s,NULL,%s,%s,'floor',0,'queued',"
    "%s,%s)"
)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _rate(
    producers: int, seconds: float, one: Callable[[int, int], Awaitable[None]]
) -> float:
    """Messages per second of ``producers`` tasks each calling ``one`` until time is up."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def produce(p: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            await one(p, i)
            i += 1
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(produce(p) for p in range(producers)))
    return done / (time.perf_counter() - start)


async def _floor(url: str, producers: int, seconds: float) -> tuple[float, list[float]]:
    """Raw psycopg: one autocommit INSERT per message; returns msgs/s and latencies (s)."""
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(producers)]
    lat: list[float] = []
    digest = text_hash("benchmark text")

    async def one(p: int, i: int) -> None:
        t0 = time.perf_counter()
        now = time.time()
        await conns[p].execute(
            _FLOOR_INSERT, ("bench", f"f{p}", "s", "benchmark text", digest, now, now)
        )
        lat.append(time.perf_counter() - t0)

    try:
        return await _rate(producers, seconds, one), lat
    finally:
        for conn in conns:
            await conn.close()


async def _ingest(store: PostgresLedger, producers: int, seconds: float) -> float:
    async def one(p: int, i: int) -> None:
        await store.ingest("bench", f"p{p}", "s", "benchmark text", agent="bench")

    return await _rate(producers, seconds, one)


def _batch_mean(store: PostgresLedger, since: tuple[int, int]) -> float:
    """Ingests per shared transaction (the group commit) since ``since``."""
    group = store._group
    batches = group.batches - since[0]
    return (group.batched - since[1]) / batches if batches else 1.0


async def _claim_latency(a: PostgresLedger, b: PostgresLedger, n: int, tag: str) -> list[float]:
    """Ingest on store ``a``; store ``b`` (its own pool and listening connection) is woken by
    the NOTIFY and claims it. Seconds from the ingest call to ``b``'s claim returning."""
    woke = asyncio.Event()

    def heard(kind: ChangeKind, ident: int) -> None:
        if kind == ChangeKind.MESSAGE:
            woke.set()

    unsubscribe = b.on_change(heard)
    await asyncio.wait_for(b.feed.listening.wait(), 10)
    samples: list[float] = []
    try:
        for i in range(n):
            woke.clear()
            t0 = time.perf_counter()
            await a.ingest("bench", f"{tag}-{i}", "s", "claim me", agent=f"lat-{tag}")
            while True:
                await woke.wait()
                woke.clear()
                if await b.claim_next(f"lat-{tag}", "node-b", 60, exclusive=False) is not None:
                    break
            samples.append(time.perf_counter() - t0)
    finally:
        unsubscribe()
    return samples


async def run(server: PostgresServer, seconds: float, rounds: int, samples: int) -> None:
    url = server.new_database("ab_bench")
    a = await PostgresLedger.open(url)
    b = await PostgresLedger.open(url)
    results: list[dict[str, float]] = []
    floor_lat: list[float] = []
    claim_lat: list[float] = []
    try:
        for r in range(rounds):
            f1, lat = await _floor(url, 1, seconds)
            floor_lat += lat
            s1 = await _ingest(a, 1, seconds)
            f8, _ = await _floor(url, 8, seconds)
            mark = (a._group.batches, a._group.batched)
            s8 = await _ingest(a, 8, seconds)
            b8 = _batch_mean(a, mark)
            claim_lat += await _claim_latency(a, b, samples, f"r{r}")
            results.append({"f1": f1, "s1": s1, "f8": f8, "s8": s8, "b8": b8})
    finally:
        await a.close()
        await b.close()
        server.drop(url)
    m = {k: statistics.median(r[k] for r in results) for k in results[0]}
    fp50, fp99 = _pct(floor_lat, 0.5) * 1e3, _pct(floor_lat, 0.99) * 1e3
    cp50, cp99 = _pct(claim_lat, 0.5) * 1e3, _pct(claim_lat, 0.99) * 1e3
    print(f"PostgreSQL ledger, durable (medians of {rounds} interleaved rounds)")
    print(f"  floor: raw psycopg INSERT+COMMIT, 1 conn   {m['f1']:>8,.0f} msgs/s")
    print(f"  ingest, 1 producer                         {m['s1']:>8,.0f} msgs/s"
          f"  {m['s1'] / m['f1']:5.2f}x floor")  # fmt: skip
    print(f"  floor: raw psycopg INSERT+COMMIT, 8 conns  {m['f8']:>8,.0f} msgs/s")
    print(f"  ingest, 8 producers                        {m['s8']:>8,.0f} msgs/s"
          f"  {m['s8'] / m['f8']:5.2f}x floor  ({m['b8']:.1f} per commit)")  # fmt: skip
    print(f"  floor: INSERT+COMMIT latency      p50 {fp50:6.2f} ms  p99 {fp99:6.2f} ms")
    verdict = "met" if cp50 <= GOAL_CLAIM_P50_MS else "MISSED"
    print(f"  ingest -> claimed on another conn p50 {cp50:6.2f} ms  p99 {cp99:6.2f} ms"
          f"  ({cp50 / fp50:.2f}x / {cp99 / fp99:.2f}x floor; {len(claim_lat)} samples;"
          f" goal p50 <= {GOAL_CLAIM_P50_MS:g} ms: {verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds-per-case", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--admin-url", help="an existing server's admin URL (else a private one)")
    args = parser.parse_args()
    if args.admin_url:
        server = PostgresServer(admin_url=args.admin_url)
        asyncio.run(run(server, args.seconds_per_case, args.rounds, args.latency_samples))
        return
    with running_postgres() as server:
        asyncio.run(run(server, args.seconds_per_case, args.rounds, args.latency_samples))


if __name__ == "__main__":
    main()
