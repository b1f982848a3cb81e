#!/usr/bin/env python3
"""Benchmarks of the whole bridge with the fake agent (a real `agentbridge up` subprocess).

Prints:
- full loop through the local channel: ingest → reply recorded, p50/p99 (no deliberate wait is
  left in it: Enter follows the paste showing; the fake agent answers at once);
- the stages of that loop from the ledger's own event times;
- agent killed → victim requeued (detection + recovery), and agent ready → victim re-injected;
- idle supervisor CPU % and RSS;
- the same loop with 20 agents under one supervisor.

Usage: .venv/bin/python scripts/bench_bridge.py [--messages 40] [--agents 20] [--idle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentbridge.config import load_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.supervisor.control import request


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Bench:
    def __init__(self, root: Path, agents: int) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.socket = f"abbench-{os.getpid()}-{agents}"
        lines = [
            f'state_dir = "{root / "state"}"',
            f'tmux_socket = "{self.socket}"',
            "[console]",
            "enabled = false",
        ]
        for i in range(agents):
            lines += [
                f"[agents.a{i}]",
                'runtime = "demo"',
                "launch_grace = 60",
                f'command = ["{sys.executable}", "-m", "agentbridge.fakeagent",'
                ' "--reply-delay", "0"]',
            ]
        self.config_path = root / "config.toml"
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config = load_config(self.config_path)
        self.names = [f"a{i}" for i in range(agents)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
        self.env.update(HOME=str(self.home), AGENTBRIDGE_CONFIG=str(self.config_path))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentbridge.cli", "up"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = asyncio.run(request(self.config, "status"))
            if status and all(a["health"] == "healthy" for a in status["agents"].values()):
                return
            time.sleep(0.2)
        raise SystemExit("bridge did not become healthy")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    async def loop(self, count: int) -> dict[str, list[float]]:
        """Send ``count`` messages one after another (round robin over agents)."""
        ledger = await Ledger.open(self.config.ledger.path)
        out: dict[str, list[float]] = {
            "loop": [],
            "claim": [],
            "inject": [],
            "accept": [],
            "turn": [],
        }
        try:
            for i in range(count):
                agent = self.names[i % len(self.names)]
                result = await ledger.ingest(
                    "local", f"bench-{agent}", "bench", f"ping {i}", agent=agent
                )
                await request(self.config, "poke", timeout=1)
                mid = result.message.id
                while (await ledger.get(mid)).state != "completed":
                    await asyncio.sleep(0.002)
                events = {e.to_state: e.at for e in await ledger.events_for(mid) if e.to_state}
                t0 = events["queued"]
                out["loop"].append((events["completed"] - t0) * 1000)
                out["claim"].append((events["claimed"] - t0) * 1000)
                inject_end = events.get("submitted", events.get("accepted", events["completed"]))
                out["inject"].append((inject_end - events["claimed"]) * 1000)
                accepted = events.get("accepted", events["completed"])
                out["accept"].append(max(0.0, accepted - inject_end) * 1000)
                out["turn"].append((events["completed"] - accepted) * 1000)
        finally:
            await ledger.close()
        return out

    async def kill_recovery(self, rounds: int) -> tuple[list[float], list[float]]:
        """Agent SIGKILLed mid-turn → victim requeued; agent ready → victim re-injected."""
        ledger = await Ledger.open(self.config.ledger.path)
        detect, reinject = [], []
        log_path = self.home / ".local/state/agentbridge/log/agentbridge.log"
        try:
            for i in range(rounds):
                agent = self.names[0]
                status = await request(self.config, "status")
                assert status is not None
                pid = status["agents"][agent]["pid"]
                result = await ledger.ingest(
                    "local", "bench-kill", "bench", f"slow {i} #fake:slow=30@1", agent=agent
                )
                await request(self.config, "poke", timeout=1)
                mid = result.message.id
                while (await ledger.get(mid)).state != "accepted":
                    await asyncio.sleep(0.005)
                killed_at = time.time()
                os.kill(pid, signal.SIGKILL)
                while (await ledger.get(mid)).state != "completed":
                    await asyncio.sleep(0.005)
                events = await ledger.events_for(mid)
                requeued = next(e.at for e in events if e.to_state == "queued" and e.attempt == 2)
                submitted = [
                    e.at
                    for e in events
                    if e.to_state in ("submitted", "accepted") and e.attempt == 2
                ]
                detect.append((requeued - killed_at) * 1000)
                ready_at = None
                for line in log_path.read_text().splitlines():
                    if f"agent {agent}: ready" in line:
                        stamp = re.match(r"(\S+ \S+),(\d+)", line)
                        if stamp:
                            t = time.mktime(time.strptime(stamp[1], "%Y-%m-%d %H:%M:%S"))
                            ready_at = t + int(stamp[2]) / 1000
                if ready_at is not None and submitted:
                    reinject.append((min(submitted) - ready_at) * 1000)
        finally:
            await ledger.close()
        return detect, reinject

    def idle(self, seconds: float) -> tuple[float, float]:
        """CPU % of the supervisor process over ``seconds`` of idleness, and its RSS (MB)."""
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        time.sleep(3)
        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu(), time.monotonic()
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS")
        )
        return (c1 - c0) / (t1 - t0) * 100, rss / 1024


def report(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} p50 {statistics.median(values):8.1f} ms   p99 {pct(values, 99):8.1f} ms"
        f"   (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--idle", type=float, default=20)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp) / "one", agents=1)
        bench.start()
        try:
            cpu, rss = bench.idle(args.idle)
            print(f"idle supervisor (1 agent)          CPU {cpu:.2f} %   RSS {rss:.1f} MB")
            results["idle_1"] = {"cpu_percent": cpu, "rss_mb": rss}
            asyncio.run(bench.loop(5))  # warm up
            loop = asyncio.run(bench.loop(args.messages))
            print(report("full loop (local channel)", loop["loop"]))
            for stage in ("claim", "inject", "accept", "turn"):
                print(report(f"  stage {stage}", loop[stage]))
            detect, reinject = asyncio.run(bench.kill_recovery(args.kills))
            print(report("agent killed → victim requeued", detect))
            if reinject:
                print(report("agent ready → victim re-injected", reinject))
            results["loop_1"] = loop
        finally:
            bench.stop()
        many = Bench(Path(tmp) / "many", agents=args.agents)
        many.start()
        try:
            cpu, rss = many.idle(args.idle)
            print(
                f"idle supervisor ({args.agents} agents)        CPU {cpu:.2f} %   RSS {rss:.1f} MB"
            )
            loop = asyncio.run(many.loop(args.messages))
            print(report(f"full loop, {args.agents} agents", loop["loop"]))
        finally:
            many.stop()
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
