#!/usr/bin/env python3
"""Benchmarks of a fleet: several real `agentbridge up` nodes on one private PostgreSQL.

Prints:
- node death → victims replayed: node A (a relocatable agent mid-turn) is killed with its tmux
  server; the time until node B requeued the victim and until B re-injected it, with the
  default lease settings. The floor is the lease itself (a dead node is only known dead once
  its lease expired): the ratio says how much the takeover adds to it;
- end-to-end latency (ingest → completed, the ledger's times) of 2 nodes × N agents against
  1 node × N agents and 1 node × 2N agents (the same agents on one supervisor) in the same
  run, p50/p99 and the ratios (each round sends one message to every agent at once);
- 2 nodes × 20 agents against 1 node × 20 agents in the same run: P1 (the full loop, ingest →
  completed) and P2 (an agent SIGKILLed mid-turn → its victim requeued), p50/p99 and ratios,
  (and against 1 node × 40, the same agents on one supervisor), and ingest (a separate store,
  as another node's channel) → claimed on a node, one message at a time to an idle agent.

Usage: .venv/bin/python scripts/bench_fleet.py [--rounds 3] [--agents 4] [--messages 10]
       [--scale 20] [--kills 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from agentbridge.config import load_config
from agentbridge.ledger.store import LedgerStore, open_ledger
from agentbridge.supervisor.control import request
from agentbridge.supervisor.fleet_config import DEFAULT_LEASE
from agentbridge.testing.postgres import PostgresServer, running_postgres

T = TypeVar("T")
FAKE = f'["{sys.executable}", "-m", "agentbridge.fakeagent", "--reply-delay", "0"]'


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_fleet: timed out waiting for {what}")
        time.sleep(0.02)


def db(url: str, fn: Callable[[LedgerStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await open_ledger(url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


class Node:
    """One `agentbridge up` with its own HOME, state dir and tmux socket."""

    def __init__(self, root: Path, url: str, name: str, agents: dict[str, str]) -> None:
        self.root = root / name
        self.home = self.root / "home"
        self.home.mkdir(parents=True)
        self.socket = f"abfleet-{os.getpid()}-{name}-{time.monotonic_ns() % 10**6}"
        lines = [
            f'state_dir = "{self.root / "state"}"',
            f'tmux_socket = "{self.socket}"',
            "[ledger]",
            f'url = "{url}"',
            "[console]",
            "enabled = false",
            "[fleet]",
            f'node = "{name}"',  # default lease settings: what the figures are about
        ]
        for agent, extra in agents.items():
            lines += [f"[agents.{agent}]", 'runtime = "demo"', "launch_grace = 60"]
            lines += [f"command = {FAKE}", extra]
        self.config_path = self.root / "config.toml"
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config = load_config(self.config_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
        env.update(HOME=str(self.home), AGENTBRIDGE_CONFIG=str(self.config_path))
        with (self.root / "stderr").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentbridge.cli", "up"],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def ready(self) -> None:
        def check() -> bool:
            live = asyncio.run(request(self.config, "status", timeout=5.0))
            return live is not None and all(
                a["health"] in ("healthy", "standby") for a in live["agents"].values()
            )

        wait(check, f"node {self.root.name} ready")

    def kill(self) -> None:
        """The machine dies: the supervisor and its agents."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@contextlib.contextmanager
def fleet(
    server: PostgresServer, nodes: dict[str, dict[str, str]]
) -> Iterator[tuple[str, list[Node]]]:
    url = server.new_database("ab_bench_fleet")
    with tempfile.TemporaryDirectory(prefix="ab-bench-fleet-") as tmp:
        started = [Node(Path(tmp), url, name, agents).start() for name, agents in nodes.items()]
        try:
            for node in started:
                node.ready()
            yield url, started
        finally:
            for node in started:
                node.stop()
            server.drop(url)


def failover(server: PostgresServer) -> tuple[float, float]:
    """Seconds from node A's death to (victim requeued, victim re-injected on B)."""
    mover = 'relocatable = true\nnode = "A"'
    with fleet(server, {"A": {"r": mover}, "B": {"r": mover}}) as (url, (a, _b)):
        result = db(url, lambda s: s.ingest("local", "c", "bench", "#fake:slow=60 x", agent="r"))
        mid = result.message.id

        def injected(attempt: int) -> bool:
            msg = db(url, lambda s: s.get(mid))
            return msg.attempt == attempt and msg.state in ("submitted", "accepted")

        wait(lambda: injected(1), "the turn on A")
        killed = time.time()
        a.kill()
        wait(lambda: injected(2), "the replay on B", timeout=60)
        back = time.time() - killed
        trail = db(url, lambda s: s.events_for(mid))
        flying = ("claimed", "submitted", "accepted")
        requeued = next(e.at for e in trail if e.to_state == "queued" and e.from_state in flying)
        return requeued - killed, back


@dataclass
class Figures:
    """One layout's samples (seconds)."""

    e2e: list[float] = field(default_factory=list)  #: ingest → completed (P1)
    claim: list[float] = field(default_factory=list)  #: ingest returned → claimed on a node
    requeue: list[float] = field(default_factory=list)  #: agent killed → victim requeued (P2)


def measure(server: PostgresServer, nodes: int, agents: int, messages: int, kills: int) -> Figures:
    """``messages`` rounds (one message to every agent of every node at once), then ``kills``
    agents of the last node SIGKILLed mid-turn (their victims requeued by their own node)."""
    layout = {f"N{n}": {f"n{n}a{i}": "" for i in range(agents)} for n in range(nodes)}
    names = [agent for node in layout.values() for agent in node]
    out = Figures()
    with fleet(server, layout) as (url, started):

        async def one_round(store: LedgerStore) -> list[int]:
            ids = [
                (await store.ingest("local", f"c-{a}", "bench", "hi", agent=a)).message.id
                for a in names
            ]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = [await store.get(i) for i in ids]
                if all(m.state == "completed" for m in done):
                    out.e2e.extend(m.updated_at - m.created_at for m in done)
                    return ids
                await asyncio.sleep(0.01)
            raise SystemExit("bench_fleet: a round did not complete")

        async def claimed(store: LedgerStore, agent: str, samples: int) -> None:
            """One message at a time to an idle agent: ingest returned → a node claimed it
            (polled from here: the claim event's time is its transaction's start)."""
            for i in range(samples):
                text = f"claim {i}"
                began = time.monotonic()
                mid = (
                    await store.ingest("local", "bench-claim", "bench", text, agent=agent)
                ).message.id
                while (msg := await store.get(mid)).state == "queued":
                    await asyncio.sleep(0.0005)  # a read is ~0.5 ms: the resolution
                out.claim.append(time.monotonic() - began)
                while msg.state != "completed":
                    msg = await store.get(mid)
                    await asyncio.sleep(0.002)

        async def kill(store: LedgerStore, node: Node, agent: str, i: int) -> None:
            status = await request(node.config, "status")
            assert status is not None
            pid = status["agents"][agent]["pid"]
            text = f"slow {i} #fake:slow=30@1"
            mid = (await store.ingest("local", "bench-kill", "bench", text, agent=agent)).message.id
            while (await store.get(mid)).state != "accepted":
                await asyncio.sleep(0.005)
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 120
            while (await store.get(mid)).state != "completed":
                if time.monotonic() > deadline:
                    raise SystemExit("bench_fleet: a victim was not replayed")
                await asyncio.sleep(0.005)
            trail = await store.events_for(mid)
            requeued = next(e.at for e in trail if e.to_state == "queued" and e.attempt == 2)
            out.requeue.append(requeued - killed_at)

        async def run() -> None:
            store = await open_ledger(url)
            try:
                await one_round(store)  # warm-up: first turns start transcripts
                out.e2e.clear()
                for _ in range(messages):
                    await one_round(store)
                last = started[-1]
                await claimed(store, next(iter(layout[last.root.name])), 5 * messages)
                victims = [a for a in layout[last.root.name]]
                for i in range(kills):
                    await kill(store, last, victims[i % len(victims)], i)
            finally:
                await store.close()

        asyncio.run(run())
    return out


def line(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{label}: p50 {pct(ms, 50):.1f} ms p99 {pct(ms, 99):.1f} ms ({len(ms)})"


def ratio(label: str, values: list[float], floor: list[float]) -> str:
    return (
        f"ratio {label}: p50 {pct(values, 50) / pct(floor, 50):.2f}×,"
        f" p99 {pct(values, 99) / pct(floor, 99):.2f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="node deaths measured")
    parser.add_argument("--agents", type=int, default=4, help="agents per node")
    parser.add_argument("--messages", type=int, default=10, help="latency rounds")
    parser.add_argument("--scale", type=int, default=20, help="agents a node for P1/P2 (0: no)")
    parser.add_argument("--kills", type=int, default=5, help="agents killed for P2")
    args = parser.parse_args()
    with running_postgres() as server:
        print(f"lease {DEFAULT_LEASE:.1f} s, renewed every {DEFAULT_LEASE / 3:.1f} s (defaults)")
        requeued, replayed = [], []
        for _ in range(args.rounds):  # --rounds 0: no node deaths
            r, b = failover(server)
            requeued.append(r)
            replayed.append(b)
            print(f"  node death → victim requeued {r:.2f} s, re-injected on B {b:.2f} s")
        if requeued:
            med_r, med_b = statistics.median(requeued), statistics.median(replayed)
            print(
                f"node death → victims replayed: requeued median {med_r:.2f} s"
                f" ({med_r / DEFAULT_LEASE:.2f}× the lease), re-injected median {med_b:.2f} s"
                f" ({med_b / DEFAULT_LEASE:.2f}× the lease; goal ≤ 5 s)"
            )
        n = args.agents
        if n:
            one = measure(server, 1, n, args.messages, 0).e2e
            two = measure(server, 2, n, args.messages, 0).e2e
            same = measure(server, 1, 2 * n, args.messages, 0).e2e  # the same agents, one node
            for label, values in (
                (f"1 node × {n}", one),
                (f"2 nodes × {n}", two),
                (f"1 node × {2 * n}", same),
            ):
                print(line(f"{label} agents: ingest → completed", values))
            for label, floor in ((f"1 node × {n}", one), (f"1 node × {2 * n} (same)", same)):
                print(ratio(f"2 nodes × {n} / {label}", two, floor))
        k = args.scale
        if k:  # P1 (the full loop) and P2 (agent killed → victim requeued) at 20 agents a node
            solo = measure(server, 1, k, args.messages, args.kills)
            pair = measure(server, 2, k, args.messages, args.kills)
            same = measure(server, 1, 2 * k, args.messages, 0)  # the same agents, one node
            for label, got in ((f"1 node × {k}", solo), (f"2 nodes × {k}", pair)):
                print(line(f"{label}: P1 ingest → completed", got.e2e))
                print(line(f"{label}: P2 agent killed → victim requeued", got.requeue))
                print(line(f"{label}: ingest → claimed on a node", got.claim))
            print(ratio(f"P1 2 nodes × {k} / 1 node × {k}", pair.e2e, solo.e2e))
            print(line(f"1 node × {2 * k} (same agents): P1 ingest → completed", same.e2e))
            print(ratio(f"P1 2 nodes × {k} / 1 node × {2 * k}", pair.e2e, same.e2e))
            print(ratio(f"P2 2 nodes × {k} / 1 node × {k}", pair.requeue, solo.requeue))
            print(ratio(f"claim 2 nodes × {k} / 1 node × {k}", pair.claim, solo.claim))


if __name__ == "__main__":
    main()
