#!/usr/bin/env python3
"""The bridge against the floor, on the real Claude Code and Codex CLIs (issue 9, P9).

For each CLI, in one run, against one mock model (``agentbridge.testing.mock_model``, in its own
thread, answering at once):

- **direct**: the minimal driver — ``load-buffer`` + ``paste-buffer -p``, poll the pane until the
  text is visible, one Enter. Its CLI runs with no hooks at all.
- **bridge**: a real ``agentbridge up`` subprocess hosting the same CLI (its hooks, idle wait,
  claim, injector, verification: everything), fed by a ledger ingest plus a poke, as
  ``agentbridge send`` does.

Sends alternate direct / bridge, each into an idle CLI. The figure is *send → model request*:
from the direct driver's first tmux command, or from the ingest commit (the ledger's ``queued``
event), to the moment the mock model received the request holding that message. Then a burst:
``--burst`` messages ingested together into the idle bridge agent, first ingest → last
completion (all answered).

The bridge's time is split at its injection (from the host's ``injection`` log line): ingest →
injecting → text visible → Enter → model request, next to the direct driver's start → Enter →
request, so a gap shows where it is (``--direct-hooks``: the direct CLI keeps the relay hooks).

Usage: .venv/bin/python scripts/bench_realcli.py [--messages 20] [--burst 5] [--cli claude,codex]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentbridge.agent.injector import text_visible
from agentbridge.agent.tmux import TmuxServer
from agentbridge.config import AgentConfig, load_config
from agentbridge.envelope import Envelope, wrap
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import RuntimeProfile, ScreenKind
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile
from agentbridge.supervisor.control import request
from agentbridge.supervisor.dispatcher import reply_command
from agentbridge.testing.mock_model import MockModelServer
from agentbridge.testing.realcli import CODEX_CONFIG, proxy_env

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class MockThread:
    """The mock model on its own event loop thread: its timestamps never wait on ours."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = MockModelServer()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise SystemExit("mock model did not start")

    def mark(self) -> int:
        """Where the next send's requests start in the mock's record."""
        return len(self.server.requests)

    def seen(self, marker: str, start: int = 0) -> float | None:
        """Wall time of the first model request holding ``marker``, from index ``start``.

        Only the requests since the send are read: rescanning the whole record every 2 ms
        (JSON bodies, growing all run) took CPU from the CLI and the bridge being measured —
        most during the bridge's sends, which wait for the model from the ingest on.
        """
        times = [r.at for r in self.server.requests[start:] if r.body and marker in r.user_text]
        return min(times) if times else None

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def agent_config(
    cli: str, binary: str, mock: MockModelServer, home: Path, cwd: Path
) -> AgentConfig:
    """The CLI against the mock (its API and its only proxy), HOME in the bench's tmp."""
    proxy = proxy_env(mock.base_url)
    if cli == "claude":
        env = {
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": mock.base_url,
            "ANTHROPIC_AUTH_TOKEN": "sk-test",
            **proxy,
        }
        return AgentConfig(name=cli, runtime="claude-code", command=[binary], cwd=cwd, env=env)
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=mock.base_url))
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "MOCK_API_KEY": "sk-test", **proxy}
    return AgentConfig(name=cli, runtime="codex", command=[binary], cwd=cwd, env=env)


class Direct:
    """The floor: the CLI in a pane of our own, no hooks, driven by the minimal recipe."""

    def __init__(
        self, profile: RuntimeProfile, agent: AgentConfig, state: Path, hooks: bool = False
    ) -> None:
        """``hooks``: keep the bridge's relay hooks (a diagnostic: what do they cost?)."""
        self.profile = profile
        self.spec = profile.prepare(agent, state, resume=False)
        argv = list(self.spec.argv)
        self.argv = argv if hooks else self._without_hooks(argv)
        self.tmux = TmuxServer(f"abdirect-{uuid.uuid4().hex[:8]}")
        self.pane = ""
        self.pid: int | None = None

    def _without_hooks(self, argv: list[str]) -> list[str]:
        if isinstance(self.profile, ClaudeCodeProfile):  # our --settings file, minus the hooks
            settings = Path(argv[argv.index("--settings") + 1])
            data = json.loads(settings.read_text())
            data.pop("hooks", None)
            settings.write_text(json.dumps(data))
            return argv
        keep: list[str] = []  # drop the ``-c hooks.<Event>=…`` overrides
        for arg in argv:
            if arg.startswith("hooks.") and keep and keep[-1] == "-c":
                keep.pop()
                continue
            keep.append(arg)
        return keep

    def box(self, screen: str) -> str | None:
        return self.profile.screen_state(screen, self.spec).input_text

    async def start(self) -> None:
        self.spec.cwd.mkdir(parents=True, exist_ok=True)
        self.pane = await self.tmux.new_session("direct", self.argv, self.spec.env, self.spec.cwd)
        self.pid = await self.tmux.pane_pid(self.pane)
        await self.wait_idle(60, settle=0.5)

    async def wait_idle(self, timeout: float, settle: float = 0.0) -> None:
        """READY with an empty box (twice, ``settle`` apart), and idle by the CLI's own word."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.profile.screen_state(await self.tmux.capture(self.pane), self.spec)
            status = self.profile.agent_status(self.spec, self.pid)
            if (
                state.kind is ScreenKind.READY
                and state.input_text == ""
                and status in (None, "idle")
            ):
                await asyncio.sleep(settle)
                state = self.profile.screen_state(await self.tmux.capture(self.pane), self.spec)
                if state.kind is ScreenKind.READY and state.input_text == "":
                    return
            await asyncio.sleep(0.02)
        raise SystemExit(f"direct {self.profile.name}: not idle within {timeout}s")

    async def send(self, text: str) -> tuple[float, float]:
        """Paste, wait until visible, one Enter. Returns the wall times it started and of the
        Enter."""
        t0 = time.time()
        await self.tmux.load_and_paste(self.pane, text)
        deadline = time.monotonic() + 5
        while True:
            box = self.box(await self.tmux.capture(self.pane, escapes=True))
            if box is not None and text_visible(box, text):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"direct: paste never visible: {box!r}")
            await asyncio.sleep(0.002)
        await self.tmux.send_enter(self.pane)
        return t0, time.time()  # after the Enter returned, as the bridge's ``enter`` mark

    async def stop(self) -> None:
        await self.tmux.kill_server()


class BridgeUp:
    """A real ``agentbridge up`` hosting one agent."""

    def __init__(self, root: Path, agent: AgentConfig) -> None:
        self.root = root
        self.home = root / "bridge-home"
        self.home.mkdir(parents=True)
        Path(agent.cwd).mkdir(parents=True, exist_ok=True)  # `up` refuses a missing cwd
        self.socket = f"abbench-rc-{uuid.uuid4().hex[:8]}"
        env_table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in agent.env.items())
        lines = [
            f'state_dir = "{root / "state"}"',
            f'tmux_socket = "{self.socket}"',
            "[console]",
            "enabled = false",
            f"[agents.{agent.name}]",
            f'runtime = "{agent.runtime}"',
            f"command = {json.dumps(agent.command)}",
            f'cwd = "{agent.cwd}"',
            "launch_grace = 60",
            "resume = false",
            f"env = {{ {env_table} }}",
        ]
        self.config_path = root / "config.toml"
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config = load_config(self.config_path)
        self.agent = agent.name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
        self.env.update(HOME=str(self.home), AGENTBRIDGE_CONFIG=str(self.config_path))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ledger: Ledger | None = None
        self.seq = 0

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - fork+exec only, no waiting
            [sys.executable, "-m", "agentbridge.cli", "up"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = await request(self.config, "status")
            if status and all(a["health"] == "healthy" for a in status["agents"].values()):
                break
            await asyncio.sleep(0.2)
        else:
            raise SystemExit("bridge did not become healthy")
        self.ledger = await Ledger.open(self.config.ledger.path)

    async def ingest(self, text: str) -> int:
        assert self.ledger is not None
        self.seq += 1
        result = await self.ledger.ingest(
            "local", "bench", "bench", text, key=f"b{self.seq}", agent=self.agent
        )
        return result.message.id

    async def poke(self) -> None:
        await request(self.config, "poke", timeout=1)

    async def events(self, mid: int) -> dict[str, float]:
        assert self.ledger is not None
        return {e.to_state: e.at for e in await self.ledger.events_for(mid) if e.to_state}

    async def wait_done(self, mid: int, timeout: float = 30) -> dict[str, float]:
        assert self.ledger is not None
        deadline = time.monotonic() + timeout
        while (msg := await self.ledger.get(mid)).state != "completed":
            if msg.state in ("failed", "quarantined") or time.monotonic() > deadline:
                raise SystemExit(f"bridge message {mid}: {msg.state} {msg.reason}")
            await asyncio.sleep(0.005)
        return await self.events(mid)

    async def stop(self) -> None:
        if self.ledger is not None:
            await self.ledger.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(  # noqa: ASYNC221 - teardown, nothing else runs
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False
        )


async def wait_seen(mock: MockThread, marker: str, start: int, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while (at := mock.seen(marker, start)) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the model never saw {marker!r}")
        await asyncio.sleep(0.002)
    return at


_INJECTION = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*: message (\d+): injection \S+ "
    r"after \d+ Enter\(s\) (\{.*\})(?: \w+=\S*)*$"  # then the log's fields (message_id=N)
)


def injection_times(log_lines: list[str]) -> dict[int, tuple[float, float, float]]:
    """Message id → wall times of its injection's start, text visible and last Enter, from the
    host's ``injection`` log lines (logged at the injection's end, timings in ms from its start;
    the log's clock has ms resolution)."""
    out: dict[int, tuple[float, float, float]] = {}
    for entry in log_lines:
        m = _INJECTION.match(entry)
        if m is None:
            continue
        try:
            timings = ast.literal_eval(m.group(4))
        except (ValueError, SyntaxError):
            continue
        enters = [v for k, v in timings.items() if k.startswith("enter")]
        if not enters or "total" not in timings:
            continue
        logged = (
            time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
        )
        start = logged - timings["total"] / 1000
        visible = start + timings.get("visible", 0.0) / 1000
        out[int(m.group(3))] = (start, visible, start + max(enters) / 1000)
    return out


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<28} p50 {statistics.median(values):7.1f} ms   p95 {pct(values, 95):7.1f} ms"
        f"   (n={len(values)})"
    )


async def bench_cli(cli: str, binary: str, mock: MockThread, root: Path, args: Any) -> None:
    profile: RuntimeProfile = ClaudeCodeProfile() if cli == "claude" else CodexProfile()
    agent = agent_config(cli, binary, mock.server, root / "home", root / "work-bridge")
    direct_agent = replace(agent, cwd=root / "work-direct")
    direct = Direct(profile, direct_agent, root / "direct-state", args.direct_hooks)
    bridge = BridgeUp(root, agent)
    await direct.start()
    await bridge.start()
    d_ms: list[float] = []
    b_ms: list[float] = []
    d_enter: list[float] = []
    d_to_enter: list[float] = []
    stages: dict[str, list[float]] = {"claimed": [], "submitted": [], "accepted": []}
    b_sends: list[tuple[int, float, float]] = []  # (message id, queued, model request)
    try:
        for i in range(args.messages + args.warmup):
            marker = f"direct-{i}-{uuid.uuid4().hex[:8]}"
            # the same text the bridge pastes: envelope, reply hint, body
            hint = f'extra replies: {reply_command(bridge.config)} reply {i + 1} "TEXT"'
            prompt = wrap(Envelope(i + 1, 1, "local", "bench"), f"hello {marker}, 2 + 2?", hint)
            start = mock.mark()
            t0, t_enter = await direct.send(prompt)
            seen = await wait_seen(mock, marker, start)
            await direct.wait_idle(30)
            await asyncio.sleep(args.gap)
            b_marker = f"bridge-{i}-{uuid.uuid4().hex[:8]}"
            start = mock.mark()
            mid = await bridge.ingest(f"hello {b_marker}, 2 + 2?")
            await bridge.poke()
            # the model request first (an in-process check, as for the direct send): polling
            # the ledger meanwhile would take CPU from the CLI being measured
            b_seen = await wait_seen(mock, b_marker, start)
            ev = await bridge.wait_done(mid)
            await asyncio.sleep(args.gap)
            if i < args.warmup:
                continue
            d_ms.append((seen - t0) * 1000)
            d_enter.append((seen - t_enter) * 1000)
            d_to_enter.append((t_enter - t0) * 1000)
            b_ms.append((b_seen - ev["queued"]) * 1000)
            b_sends.append((mid, ev["queued"], b_seen))
            for stage in stages:
                if stage in ev:
                    stages[stage].append((ev[stage] - ev["queued"]) * 1000)
        # burst: several messages at once into the idle bridge agent
        bursts: list[float] = []
        for _ in range(args.bursts):
            mids = [await bridge.ingest(f"burst {j} of {args.burst}") for j in range(args.burst)]
            await bridge.poke()
            done = [await bridge.wait_done(mid, 60) for mid in mids]
            first = min(ev["queued"] for ev in done)
            bursts.append((max(ev["completed"] for ev in done) - first) * 1000)
            await asyncio.sleep(1.0)
    finally:
        await direct.stop()
        await bridge.stop()
        log = bridge.home / ".local/state/agentbridge/log/agentbridge.log"
        log_lines = log.read_text().splitlines() if log.exists() else []
        for entry in log_lines[-args.log :] if args.log else []:
            print("    log:", entry[:300])
    injections = injection_times(log_lines)
    known = [(injections[m], q, s) for m, q, s in b_sends if m in injections]
    to_start = [(inj[0] - q) * 1000 for inj, q, _ in known]
    to_visible = [(inj[1] - inj[0]) * 1000 for inj, _, _ in known]
    to_enter = [(inj[2] - q) * 1000 for inj, q, _ in known]
    enter_to = [(s - inj[2]) * 1000 for inj, _, s in known]
    ratio = statistics.median(b_ms) / statistics.median(d_ms)
    print(f"{profile.name}: send → model request")
    print(line("direct (paste, visible, Enter)", d_ms))
    print(line("  direct start → Enter", d_to_enter))
    print(line("  direct Enter → request", d_enter))
    print(line("bridge (ingest → request)", b_ms))
    if to_enter:
        print(line("  bridge ingest → injecting", to_start))
        print(line("  bridge injecting → visible", to_visible))
        print(line("  bridge ingest → Enter", to_enter))
        print(line("  bridge Enter → request", enter_to))
    print(f"  ratio bridge/direct p50 {ratio:.2f}x   p95 {pct(b_ms, 95) / pct(d_ms, 95):.2f}x")
    for stage, values in stages.items():
        if values:
            print(line(f"  bridge ingest → {stage}", values))
    print(
        f"  burst of {args.burst} → all answered: "
        + ", ".join(f"{b:.0f}" for b in bursts)
        + f" ms (median {statistics.median(bursts):.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.3, help="idle seconds between sends")
    parser.add_argument("--cli", default="claude,codex")
    parser.add_argument(
        "--direct-hooks",
        action="store_true",
        help="diagnostic: the direct CLI keeps the bridge's relay hooks (what do they cost?)",
    )
    parser.add_argument("--log", type=int, default=0, help="print the bridge log's last N lines")
    args = parser.parse_args()
    out = subprocess.run(
        [str(ROOT / "scripts" / "install-agent-clis")], capture_output=True, text=True, check=True
    ).stdout.split()
    binaries = dict(zip(("claude", "codex"), out, strict=True))
    mock = MockThread()
    try:
        for cli in args.cli.split(","):
            with tempfile.TemporaryDirectory(prefix=f"ab-bench-{cli}-") as tmp:
                asyncio.run(bench_cli(cli, binaries[cli], mock, Path(tmp).resolve(), args))
    finally:
        mock.stop()


if __name__ == "__main__":
    main()
