"""Long messages go to a file under the agent's own cwd, which lives only while it is in flight.

Through the whole bridge with the fake agent in a real pane: the file is created 0600 (dir
0700) under ``<cwd>/.agentbridge/inbox/``, git ignores it, it holds exactly the text, and it is
gone once the message completes, once it is quarantined, and (a leftover) once a session starts.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentbridge.agent import inbox
from bridge_harness import default_agents, running_bridge, wait_for

LONG = "".join(f"line {i:05d} " + "y" * 80 + "\n" for i in range(30)) + "END-OF-LONG-MESSAGE"


def _project(tmp_path: Path) -> Path:
    cwd = tmp_path / "project"
    cwd.mkdir()
    subprocess.run(["git", "init", "-q", str(cwd)], check=True)
    return cwd


def _setup(tmp_path: Path, reply_delay: float, max_attempts: int = 3) -> dict[str, Any]:
    cwd = _project(tmp_path)
    agents = default_agents(
        cwd=str(cwd),
        command=[sys.executable, "-m", "agentbridge.fakeagent", "--reply-delay", str(reply_delay)],
    )
    ledger = {"path": str(tmp_path / "state" / "ledger.db"), "max_attempts": max_attempts}
    extra = {"injection": {"spill_threshold": 1000}, "ledger": ledger}
    return {"agents": agents, "extra": extra, "cwd": cwd}


def _assert_private_and_ignored(cwd: Path, path: Path) -> None:
    assert path.read_text(encoding="utf-8") == LONG  # every character, exactly
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((cwd / ".agentbridge").stat().st_mode) == 0o700
    assert (cwd / ".agentbridge" / ".gitignore").read_text() == "*\n"
    ignored = subprocess.run(["git", "-C", str(cwd), "check-ignore", "-q", str(path)], check=False)
    assert ignored.returncode == 0, "git does not ignore the inbox file"
    untracked = subprocess.run(
        ["git", "-C", str(cwd), "status", "--porcelain"], capture_output=True, text=True
    )
    assert ".agentbridge" not in untracked.stdout


def test_long_message_file_lives_under_cwd_until_completed(tmp_path: Path) -> None:
    setup = _setup(tmp_path, reply_delay=1.5)
    cwd: Path = setup["cwd"]
    with running_bridge(tmp_path, agents=setup["agents"], extra=setup["extra"]) as bridge:
        short = bridge.send("short one")
        assert bridge.wait_state(short, "completed").reply == "echo: short one"
        assert not inbox.pending_ids(cwd)  # short messages are pasted whole
        mid = bridge.send(LONG)
        path = cwd / inbox.relative(mid)
        wait_for(path.exists, what="the inbox file while the message is in flight")
        _assert_private_and_ignored(cwd, path)
        msg = bridge.wait_state(mid, "completed", timeout=30)
        assert msg.reply is not None and inbox.relative(mid) in msg.reply  # the pointer pasted
        assert not path.exists()
        assert inbox.pending_ids(cwd) == []


def test_inbox_file_is_deleted_when_the_message_is_quarantined(tmp_path: Path) -> None:
    setup = _setup(tmp_path, reply_delay=120, max_attempts=1)
    cwd: Path = setup["cwd"]
    with running_bridge(tmp_path, agents=setup["agents"], extra=setup["extra"]) as bridge:
        mid = bridge.send(LONG)
        path = cwd / inbox.relative(mid)
        wait_for(path.exists, what="the inbox file")
        bridge.wait_state(mid, "accepted", timeout=20)
        os.kill(int(bridge.status()["agents"]["demo"]["pid"]), signal.SIGKILL)  # dies mid-turn
        msg = bridge.wait_state(mid, "quarantined", "completed", "queued", timeout=30)
        assert msg.state == "quarantined", msg
        wait_for(lambda: not path.exists(), what="the inbox file deleted")


def test_leftover_inbox_files_are_swept_at_session_start(tmp_path: Path) -> None:
    setup = _setup(tmp_path, reply_delay=0.05)
    cwd: Path = setup["cwd"]
    leftover = inbox.write(cwd, 4242, "left behind by a crash")
    assert leftover.exists()
    with running_bridge(tmp_path, agents=setup["agents"], extra=setup["extra"]):
        wait_for(lambda: not leftover.exists(), what="the leftover swept")


@pytest.mark.parametrize("length", [999, 1000, 1001])
def test_paste_limit_boundary(tmp_path: Path, length: int) -> None:
    from agentbridge.agent.turn import build_prompt
    from agentbridge.models import Message
    from agentbridge.states import MessageState

    message = Message(
        id=7, channel="local", conversation="c", sender="alice", platform_id=None,
        text="x" * length, agent="demo", priority=0, state=MessageState.CLAIMED, attempt=1,
        fence=1, lease_owner="t", lease_expires_at=None, heartbeat_at=None, reply=None,
        reason=None, meta={}, created_at=0.0, updated_at=0.0,
    )  # fmt: skip
    prompt, _ = build_prompt(message, tmp_path, 1000)
    spilled = (tmp_path / inbox.relative(7)).exists()
    assert spilled == (length > 1000)
    assert ("x" * length in prompt) == (length <= 1000)
