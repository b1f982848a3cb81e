#!/usr/bin/env python3
"""Measure the largest message one bracketed paste delivers intact to the model, per real CLI.

Drives the real Claude Code and Codex CLIs in a private tmux against the mock model
(``agentbridge.testing.mock_model``): pastes envelope + body of growing size (100-char lines,
or one long line with ``--one-line``) ending in a unique marker, presses Enter, and checks that
the model request holds every character. Stops at the first size that arrives cut, collapsed
("[Pasted text …]" without content), not at all, or slower than ``--slow`` seconds.

    .venv/bin/python scripts/measure_paste_limit.py [--cli claude|codex|both] [--sizes 8000,...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agentbridge.agent.injector import Injector, InjectorConfig
from agentbridge.agent.tmux import TmuxServer
from agentbridge.envelope import Envelope, wrap
from agentbridge.plugin.protocols import ScreenKind
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile
from agentbridge.sanitize import sanitize_text
from agentbridge.testing import async_wait_until
from agentbridge.testing.mock_model import MockModelServer
from agentbridge.testing.realcli import claude_agent, codex_agent

ROOT = Path(__file__).resolve().parents[1]
SIZES = [1000, 4000, 8000, 16000, 32000, 64000, 100_000, 200_000, 400_000, 800_000, 1_600_000]


def body_of(size: int, marker: str, one_line: bool) -> str:
    """``size`` characters of text ending in ``marker`` (unique per paste)."""
    if one_line:
        return ("y" * (size - len(marker) - 1)) + " " + marker
    lines, total, i = [], 0, 0
    while total < size - len(marker) - 120:
        line = f"{i:06d} " + "x" * 92
        lines.append(line)
        total += len(line) + 1
        i += 1
    filler = "z" * max(0, size - total - len(marker) - 1)
    return "\n".join(lines) + "\n" + filler + marker


def clis() -> tuple[Path, Path]:
    import subprocess

    out = subprocess.run(
        [str(ROOT / "scripts" / "install-agent-clis")], capture_output=True, text=True, check=True
    ).stdout.split()
    return Path(out[0]), Path(out[1])


async def measure(cli: str, sizes: list[int], one_line: bool, slow: float) -> list[str]:
    claude, codex = clis()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ab-paste-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        async with MockModelServer() as mock:
            tmux = TmuxServer(f"ab-paste-{uuid.uuid4().hex[:6]}")
            profile = ClaudeCodeProfile() if cli == "claude" else CodexProfile()
            make = claude_agent if cli == "claude" else codex_agent
            agent = make(claude if cli == "claude" else codex, mock.base_url, root)
            spec = profile.prepare(agent, root / "state", resume=False)
            pane = await tmux.new_session("m", spec.argv, spec.env, spec.cwd)
            pid = await tmux.pane_pid(pane)

            async def ready() -> bool:
                state = profile.screen_state(await tmux.capture(pane, escapes=True), spec)
                idle = profile.agent_status(spec, pid) in (None, "idle")
                return idle and state.kind is ScreenKind.READY and state.input_text == ""

            try:
                await async_wait_until(ready, timeout=60, interval=0.2, what=f"{cli} ready")
                await asyncio.sleep(1.0)  # both CLIs redraw once more after their first frame
                for n, size in enumerate(sizes, start=1):
                    marker = f"END-MARK-{uuid.uuid4().hex}"
                    body = body_of(size, marker, one_line)
                    prompt = wrap(Envelope(n, 1, "local", "alice"), body)
                    head = f"[agentbridge message={n} "

                    def hit(mock: MockModelServer = mock, head: str = head) -> list[str]:
                        return [
                            r.user_text for r in mock.requests if r.body and head in r.user_text
                        ]

                    async def seen(hit=hit) -> bool:  # type: ignore[no-untyped-def]
                        return bool(hit())

                    injector = Injector(
                        tmux,
                        pane,
                        lambda s: profile.screen_state(s, spec).input_text,
                        InjectorConfig(visible_timeout=max(3.0, slow), verify_timeout=slow),
                    )
                    t0 = time.monotonic()
                    result = await injector.inject(prompt, seen)
                    took = time.monotonic() - t0
                    texts = hit()
                    want = sanitize_text(body)
                    intact = any(want in t for t in texts)
                    got = max((len(t) for t in texts), default=0)
                    verdict = "intact" if intact else ("cut" if texts else "not received")
                    if intact and took > slow:
                        verdict = "slow"
                    rows.append(
                        f"{cli}\t{size}\t{verdict}\t{result.outcome}\t"
                        f"visible {result.timings.get('visible', -1):.0f} ms\t"
                        f"request {took * 1000:.0f} ms\treceived {got} chars"
                    )
                    print(rows[-1], flush=True)
                    if verdict != "intact":
                        break
                    await async_wait_until(ready, timeout=120, interval=0.1, what="idle again")
            finally:
                screen = await tmux.capture(pane)
                (Path(tempfile.gettempdir()) / f"paste-{cli}-last-screen.txt").write_text(screen)
                await tmux.kill_server()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cli", choices=["claude", "codex", "both"], default="both")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--one-line", action="store_true", help="one long line, not 100-char lines")
    parser.add_argument("--slow", type=float, default=10.0, help="seconds to the request = slow")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for cli in ("claude", "codex") if args.cli == "both" else (args.cli,):
        asyncio.run(measure(cli, sizes, args.one_line, args.slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
