"""Measure FileTail latency: os.write of one line → on_line callback on the asyncio loop.

Usage: .venv/bin/python scripts/bench_tail.py [--n 500] [--gap-ms 5] [--polling]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from agentbridge.agent.tail import FileTail


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(n: int, gap: float, polling: bool) -> None:
    observer = None
    if polling:
        from watchdog.observers.polling import PollingObserver

        observer = PollingObserver(timeout=1.0)
        observer.start()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.jsonl"
        got: dict[int, float] = {}
        done = asyncio.Event()

        def on_line(line: str) -> None:
            got[int(line.split()[0])] = time.perf_counter()
            if len(got) == n:
                done.set()

        tail = FileTail(path, on_line, observer=observer, reconcile_interval=5.0)
        await tail.start()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sent: dict[int, float] = {}
        for i in range(n):
            sent[i] = time.perf_counter()
            os.write(fd, f"{i} {'x' * 200}\n".encode())
            await asyncio.sleep(gap)
        await asyncio.wait_for(done.wait(), 30)
        os.close(fd)
        lat = [(got[i] - sent[i]) * 1000 for i in range(n)]
        print(
            f"paced n={n} gap={gap * 1000:.1f}ms {'polling' if polling else 'native'}: "
            f"p50={statistics.median(lat):.3f}ms p99={pct(lat, 99):.3f}ms max={max(lat):.3f}ms"
        )
        # burst: 1000 appends as fast as possible, time until the last line is delivered
        got.clear()
        done.clear()
        base = n
        n_burst = 1000
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        t0 = time.perf_counter()
        for i in range(n_burst):
            os.write(fd, f"{base + i} y\n".encode())
        t_written = time.perf_counter()

        n = n_burst
        await asyncio.wait_for(done.wait(), 30)
        os.close(fd)
        order_ok = sorted(got) == list(range(base, base + n_burst))
        print(
            f"burst {n_burst} lines: written in {(t_written - t0) * 1000:.1f}ms, all delivered "
            f"{(max(got.values()) - t0) * 1000:.1f}ms after the first write, complete={order_ok}"
        )
        await tail.stop()
    if observer is not None:
        observer.stop()
        observer.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--polling", action="store_true")
    args = ap.parse_args()
    asyncio.run(run(args.n, args.gap_ms / 1000, args.polling))


if __name__ == "__main__":
    main()
