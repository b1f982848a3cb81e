#!/usr/bin/env python3
"""Agent-host latencies with the fake agent in a real tmux pane (issue: agent host).

- claim committed → first paste byte read by the agent (its ``--byte-log``), p50/p99;
- turn-end line written to the transcript → completion committed in the ledger, p50/p99.

A poller thread watches both files' sizes every 0.2 ms, so the "written"/"arrived" times are
exact to well under a millisecond. Neither interval holds a deliberate wait.

Usage: .venv/bin/python scripts/bench_agent_host.py [--messages 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from agentbridge.agent.host import AgentSession
from agentbridge.agent.tmux import TmuxServer
from agentbridge.config import AgentConfig
from agentbridge.ledger.sqlite import Ledger
from agentbridge.runtimes.demo import DemoProfile


class SizeWatch(threading.Thread):
    """Records (time, size) whenever a file grows."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.growth: list[tuple[float, int]] = []
        self.stop = False

    def run(self) -> None:
        last = -1
        while not self.stop:
            try:
                size = os.stat(self.path).st_size
            except OSError:
                size = -1
            if size != last:
                self.growth.append((time.time(), size))
                last = size
            time.sleep(0.0002)

    def first_growth_after(self, t: float, size_before: int) -> float | None:
        for at, size in self.growth:
            if at >= t and size > size_before:
                return at
        return None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def main(count: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="ab-bench-host-"))
    byte_log = root / "bytes.log"
    byte_log.touch()
    ledger = await Ledger.open(root / "ledger.db")
    tmux = TmuxServer(f"abbench-{uuid.uuid4().hex[:8]}")
    agent = AgentConfig(
        name="bench",
        runtime="demo",
        command=[
            sys.executable,
            "-m",
            "agentbridge.fakeagent",
            "--reply-delay",
            "0",
            "--byte-log",
            str(byte_log),
        ],
        cwd=root / "work",
    )
    session = AgentSession(
        agent=agent,
        profile=DemoProfile(),
        ledger=ledger,
        tmux=tmux,
        state_dir=root / "state",
        owner="bench/1",
    )
    await session.start(resume=False)
    assert await session.wait_ready(30), "fake agent not ready"
    paste_watch = SizeWatch(byte_log)
    paste_watch.start()
    # the turn end reaches the host as a Stop hook record or a transcript line, whichever
    # is written first: watch both
    hook_watch = SizeWatch(root / "state" / "hooks.jsonl")
    hook_watch.start()
    to_paste: list[float] = []
    to_complete: list[float] = []
    released: list[str] = []
    try:
        for i in range(count + 5):
            await ledger.ingest("local", "bench", "bench", f"ping {i}", agent="bench")
            before_bytes = os.stat(byte_log).st_size
            msg = await ledger.claim_next("bench", session.owner)
            assert msg is not None
            claimed_at = time.time()
            transcript = session._transcript_path
            t_size = transcript.stat().st_size if transcript and transcript.exists() else 0
            t_watch = SizeWatch(transcript) if transcript else None
            if t_watch:
                t_watch.start()
            flight = await session.run_message(msg)
            while flight.outcome is not None and flight.outcome.value == "not_delivered":
                # the fake agent repaints by clearing the screen: a box check that lands
                # mid-repaint finds no box and gives the message back, as it must; try again
                released.append(flight.detail)
                msg = await ledger.claim_next("bench", session.owner)
                assert msg is not None
                claimed_at = time.time()
                flight = await session.run_message(msg)
            assert flight.outcome is not None and flight.outcome.value == "completed", flight
            events = await ledger.events_for(msg.id)
            completed_at = next(e.at for e in events if e.to_state == "completed")
            pasted_at = paste_watch.first_growth_after(claimed_at - 0.001, before_bytes)
            if t_watch is None:
                transcript = session._transcript_path
                t_watch = SizeWatch(transcript) if transcript else None
            completion = next(e for e in events if e.to_state == "completed")
            watch = hook_watch if "turn end seen in hook" in completion.detail else t_watch
            if t_watch is not None:
                t_watch.stop = True
            base = t_size if watch is t_watch else 0
            # the write that completed the turn: the last one to that file before the commit
            writes = [
                at
                for at, size in (watch.growth if watch else [])
                if size > base and claimed_at < at <= completed_at
            ]
            ended_at = max(writes) if writes else None
            if i < 5:
                continue  # warm-up
            if pasted_at is not None:
                to_paste.append((pasted_at - claimed_at) * 1000)
            if ended_at is not None:
                to_complete.append((completed_at - ended_at) * 1000)
    finally:
        paste_watch.stop = True
        hook_watch.stop = True
        await session.stop()
        await tmux.kill_server()
        await ledger.close()

    def line(name: str, values: list[float]) -> str:
        return (
            f"{name:<44} p50 {statistics.median(values):6.2f} ms  p99 {pct(values, 99):6.2f}"
            f" ms  (n={len(values)})"
        )

    print(line("claim committed → paste bytes at the agent", to_paste))
    print(line("turn-end evidence written → completion committed", to_complete))
    if released:
        print(f"({len(released)} injection(s) given back and retried: {sorted(set(released))})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=60)
    asyncio.run(main(parser.parse_args().messages))
