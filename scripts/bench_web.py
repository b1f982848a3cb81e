"""Web console round trip: a message typed in the browser → its reply rendered on the page.

Run: ``.venv/bin/python scripts/bench_web.py [N] [--standalone]``.

* default: a real ``agentbridge up`` (the demo agent = the fake agent in tmux, isolated by HOME
  and a private tmux socket), driven from headless Chromium through the console it prints. The
  ledger's timestamps split each round trip into phases (ingest → claim → submit → accept →
  complete → sent → rendered), so a slow phase is named, not guessed.
* ``--standalone``: the console alone over a ledger, with an in-process agent that answers at
  once through the real ledger API: the console's own share (POST, SSE wake-up, rendering).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentbridge.channels.web import WebChannel
from agentbridge.channels.web.testing import CHROMIUM_ARGS, running_console
from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import wait_until

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PHASES = ("claimed", "submitted", "accepted", "completed", "sent")
INSTRUMENT = """() => {
  window.__sent = []; window.__seen = {};
  document.querySelector('#text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') window.__sent.push(Date.now());
  }, true);
  const count = () => document.querySelectorAll('article.turn .bubble.agent:not([hidden])').length;
  new MutationObserver(() => {
    const n = count();
    if (!(n in window.__seen)) window.__seen[n] = Date.now();
  }).observe(document.querySelector('#thread'), {subtree: true, childList: true, attributes: true});
}"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"{name:<22} p50 {statistics.median(ms):7.1f} ms   p95 {pct(ms, 0.95):7.1f} ms"
        f"   min {min(ms):7.1f}   max {max(ms):7.1f}"
    )


async def drive(url: str, n: int, ledger_path: Path) -> None:
    """Send ``n`` messages from the page, one after the other; time each to its rendered reply."""
    from playwright.async_api import async_playwright, expect

    round_trips: list[float] = []
    sent_at: list[float] = []
    seen_at: list[float] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await (await browser.new_context()).new_page()
        await page.goto(url)
        await page.goto(page.url.split("#")[0] + "#/chat/demo")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        replies = page.locator("article.turn .bubble.agent:not([hidden])")
        # timestamps taken in the page (no CDP round trip in the numbers): the Enter keydown,
        # and the DOM mutation that made the n-th reply bubble visible
        await page.evaluate(INSTRUMENT)
        for i in range(n + 1):  # the first one warms up the agent's session and the page
            before = await replies.count()
            await page.fill("#text", f"bench message {i}")
            await page.press("#text", "Enter")
            await expect(replies).to_have_count(before + 1, timeout=30_000)
            start, seen = await page.evaluate(
                f"[window.__sent[{before}], window.__seen[{before + 1}]]"
            )
            if i:
                round_trips.append((seen - start) / 1000)
                sent_at.append(start / 1000)
                seen_at.append(seen / 1000)
        await browser.close()
    report("browser round trip", round_trips)
    await phases(ledger_path, n, sent_at, seen_at)


async def phases(ledger_path: Path, n: int, sent_at: list[float], seen_at: list[float]) -> None:
    """Split each round trip with the ledger's own timestamps (same machine, same clock)."""
    ledger = await Ledger.open(ledger_path)
    try:
        messages = [m for m in await ledger.list_messages(channel="web")][-n:]
        steps: dict[str, list[float]] = {p: [] for p in ("ingested", *PHASES, "rendered")}
        for message, start, seen in zip(messages, sent_at, seen_at, strict=True):
            marks = {"ingested": message.created_at}
            for event in await ledger.events_for(message.id):
                if event.kind == "transition" and event.to_state in PHASES:
                    marks.setdefault(str(event.to_state), event.at)
                if event.kind == "outbox" and event.to_state == "sent":
                    marks.setdefault("sent", event.at)
            marks["rendered"] = seen
            previous = start
            for name in steps:
                if name in marks:
                    steps[name].append(marks[name] - previous)
                    previous = marks[name]
        print("phases (time since the previous step):")
        for name, samples in steps.items():
            if samples:
                report(f"  → {name}", samples)
    finally:
        await ledger.close()


# ---------------------------------------------------------------------------- modes


def real_bridge(n: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from bridge_harness import Bridge  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        bridge = Bridge(Path(tmp), console=True).start()
        try:
            found: Callable[[], Any] = lambda: re.search(  # noqa: E731
                r"web at (http\S+)", bridge.log_path.read_text(errors="replace")
            )
            url = wait_until(found, timeout=20, what="the console URL in the log").group(1)
            print(f"agentbridge up: {url.split('?')[0]} (demo agent)")
            asyncio.run(drive(url, n, bridge.config.ledger.path))
        finally:
            bridge.stop()


async def standalone(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        path = Path(tmp) / "ledger.db"
        ledger = await Ledger.open(path)
        async with running_console(ledger, Path(tmp) / "state") as console:
            agent = asyncio.create_task(instant_agent(ledger, console))
            print(f"standalone console: {console.base_url} (in-process instant agent)")
            try:
                await drive(console.url, n, path)
            finally:
                agent.cancel()
        await ledger.close()


async def instant_agent(ledger: Ledger, console: WebChannel) -> None:
    """The agent host and relay in one loop: answer every message at once."""
    wake = asyncio.Event()
    ledger.on_change(lambda kind, ident: wake.set())
    while True:
        wake.clear()
        msg = await ledger.claim_next("demo", "bench", 60)
        if msg is None:
            await wake.wait()
            continue
        await ledger.mark_submitted(msg.id, msg.fence)
        await ledger.mark_accepted(msg.id, msg.fence)
        await ledger.complete(msg.id, msg.fence, f"echo: {msg.text}")
        for item in await ledger.list_replies(message_id=msg.id, state="pending"):
            item = await ledger.reserve_send(item.id)
            await ledger.mark_sent(item.id, await console.deliver(item))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 20
    if "--standalone" in sys.argv:
        asyncio.run(standalone(n))
    else:
        real_bridge(n)


if __name__ == "__main__":
    main()
