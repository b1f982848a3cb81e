"""Micro-benchmark of the tmux layer: per-operation cost and a full injection into the fake agent.

Run: ``.venv/bin/python scripts/bench_inject.py [N] [--mode control|subprocess|both]``. Uses its
own private tmux socket per mode. ``control`` = the persistent ``tmux -C`` client (the default
of :class:`TmuxServer`), ``subprocess`` = one tmux process per operation (``control=False``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentbridge.agent.injector import Injector, InjectorConfig
from agentbridge.agent.tmux import TmuxServer
from agentbridge.runtimes.claude.profile import claude_box
from agentbridge.testing import async_wait_until

SINK = (
    "import os,sys,tty\ntty.setraw(0)\nos.write(1,b'\\x1b[?2004h')\nwhile os.read(0,1<<16): pass\n"
)


async def timed(n: int, op: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """p50 and p95 in ms over ``n`` runs."""
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


async def bench(n: int, cwd: Path, control: bool) -> None:
    print(f"-- {'control client' if control else 'subprocess per command'}")
    server = TmuxServer(f"abbench-{uuid.uuid4().hex[:8]}", control=control)
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TERM": "tmux-256color"}
    try:
        pane = await server.new_session("sink", [sys.executable, str(cwd / "sink.py")], env, cwd)
        ops: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("capture", lambda: server.capture(pane)),
            ("send_enter", lambda: server.send_enter(pane)),
            ("pane_alive", lambda: server.pane_alive(pane)),
            ("paste 100 B", lambda: server.load_and_paste(pane, "x" * 100)),
            ("paste 4 KB", lambda: server.load_and_paste(pane, "x" * 4096)),
            ("paste 64 KB", lambda: server.load_and_paste(pane, "x" * 65536)),
        ]
        for name, op in ops:
            p50, p95 = await timed(n, op)
            print(f"{name:<14} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")

        agent_env = {**env, "HOME": str(cwd), "CLAUDE_CONFIG_DIR": str(cwd / "claude")}
        argv = [sys.executable, "-m", "agentbridge.fakeagent", "--reply-delay", "0"]
        apane = await server.new_session("agent", argv, agent_env, cwd)
        inj = Injector(server, apane, claude_box, InjectorConfig())

        async def box_empty() -> bool:
            return await inj.read_box() == ""

        await async_wait_until(box_empty, timeout=15, what="fake agent ready")
        totals: list[float] = []
        for i in range(max(5, n // 10)):
            res = await inj.inject(f"bench message {i}", None)
            totals.append(res.timings.get("enter1", float("nan")))
            await async_wait_until(box_empty, interval=0.005)
        print(f"inject → first Enter (fake agent) p50 {statistics.median(totals):.1f} ms")
        print(f"last timings: {res.timings}")
        print(f"tmux calls: {dict(server.control_stats)}")
    finally:
        await server.kill_server()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=100)
    parser.add_argument("--mode", choices=["control", "subprocess", "both"], default="both")
    args = parser.parse_args()
    modes = {"control": [True], "subprocess": [False], "both": [False, True]}[args.mode]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp).resolve()
        (cwd / "sink.py").write_text(SINK)
        for control in modes:
            asyncio.run(bench(args.n, cwd, control))


if __name__ == "__main__":
    main()
