"""A message refused by a held input box is retried later each time, not every ~20 ms.

Real ``agentbridge up``, the fake agent in real tmux, a real ledger: a human's text sits in
the box while a message waits (supervisor/held_box.py).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from agentbridge.supervisor.held_box import HeldBox
from bridge_harness import running_bridge, wait_for

pytestmark = pytest.mark.slow

HOLD = 3.0  # seconds the human keeps text in the box (the window the releases are counted in)


def _releases(events: list[dict[str, object]]) -> int:
    return sum(1 for e in events if "released" in str(e["detail"]))


def test_held_box_backs_off_then_delivers(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        tmux = ["tmux", "-L", bridge.socket]
        subprocess.run([*tmux, "send-keys", "-t", "ab-demo", "-l", "a human drafts"], check=True)
        wait_for(lambda: "a human drafts" in bridge.capture(), what="human text on screen")
        sent = time.monotonic()
        mid = bridge.send("from the bridge")
        wait_for(lambda: _releases(bridge.events(mid)) >= 1, what="the first refusal")
        time.sleep(HOLD)  # the measurement window: the box stays held all along
        held = _releases(bridge.events(mid))
        elapsed = time.monotonic() - sent  # at most (the CLI calls take time under load)
        # 50, 100 … 800 ms (1.55 s, 6 tries), then one a second; every ~20 ms before (~150)
        assert 2 <= held <= 6 + elapsed, f"{held} releases in {elapsed:.1f}s"
        assert "from the bridge" not in bridge.capture()
        subprocess.run([*tmux, "send-keys", "-t", "ab-demo", "C-u"], check=True)  # box free
        cleared = time.time()
        msg = bridge.wait_state(mid, "completed", timeout=30)
        assert msg.reply == "echo: from the bridge" and msg.attempt == 1
        # once the box is free the message goes in without waiting out the 1 s backoff
        submitted = next(e for e in bridge.events(mid) if e["to_state"] == "submitted")
        assert float(str(submitted["at"])) - cleared < 0.9 + 0.5, "free box seen late"


def test_delay_grows_to_cap_and_resets() -> None:
    backoff = HeldBox(first=0.05, cap=1.0)
    delays = [backoff.next_delay() for _ in range(7)]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.05
