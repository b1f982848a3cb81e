"""Fault tests: a real bridge, a real fake agent in tmux, and something going wrong.

Each asserts the ledger's end state: nothing acknowledged is lost, nothing completed is
re-injected, nothing sent is re-sent. Fault directives like ``#fake:crash@1`` act only on
attempt 1 of a message, so the replay (attempt 2) goes through.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bridge_harness import Bridge, default_agents, running_bridge, wait_for

pytestmark = pytest.mark.slow


def transcript_prompts(bridge: Bridge, message_id: int) -> list[int]:
    """Attempts of ``message_id`` the agent's transcripts recorded (every session file)."""
    attempts = []
    for path in bridge.state_dir.rglob("*.jsonl"):
        if "projects" not in path.parts:
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            content = row.get("message", {}).get("content") if row.get("type") == "user" else None
            if isinstance(content, str) and content.startswith(
                f"[agentbridge message={message_id} "
            ):
                attempts.append(int(content.split("attempt=")[1].split()[0]))
    return attempts


def test_agent_killed_mid_turn_is_replayed_once(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        pid = bridge.pane_pid()
        mid = bridge.send("work slowly #fake:slow=2@1")
        bridge.wait_state(mid, "accepted")
        wait_for(lambda: transcript_prompts(bridge, mid) == [1], what="attempt 1 recorded")
        newer = bridge.send("a newer message, same conversation")
        os.kill(pid, signal.SIGKILL)
        msg = bridge.wait_state(mid, "completed", timeout=40)
        later = bridge.wait_state(newer, "completed", timeout=40)
        assert msg.updated_at < later.updated_at  # the victim is replayed before anything newer
        assert msg.attempt == 2
        assert msg.reply is not None and msg.reply.startswith("echo: work slowly")
        wait_for(lambda: sorted(transcript_prompts(bridge, mid)) == [1, 2], what="2 prompts")
        status = bridge.status()["agents"]["demo"]
        assert status["restarts"] == 1 and status["victims"] == 1
        assert status["last_recovery"]["replayed"] == [mid]
        assert "VICT" in bridge.cli("status").stdout
        detail = [e["detail"] for e in bridge.events(mid) if e["to_state"] == "queued"]
        assert any("re-sent after a restart" in d for d in detail)


def test_crash_directive_replays_then_completes(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        mid = bridge.send("boom #fake:crash@1")
        msg = bridge.wait_state(mid, "completed", timeout=40)
        assert msg.attempt == 2
        wait_for(lambda: sorted(transcript_prompts(bridge, mid)) == [1, 2], what="2 prompts")


def test_hang_is_restarted_and_replayed(tmp_path: Path) -> None:
    agents = default_agents(progress_timeout=2)
    with running_bridge(tmp_path, agents=agents) as bridge:
        mid = bridge.send("stuck #fake:hang@1")
        msg = bridge.wait_state(mid, "completed", timeout=40)
        assert msg.attempt == 2
        assert any("hang" in e["detail"] for e in bridge.events(mid))


def test_hang_every_time_is_quarantined(tmp_path: Path) -> None:
    agents = default_agents(progress_timeout=1.5)
    with running_bridge(tmp_path, agents=agents) as bridge:
        mid = bridge.send("always stuck #fake:hang")
        after = bridge.send("a later message in the same conversation")
        msg = bridge.wait_state(mid, "quarantined", timeout=60)
        assert msg.attempt == 3 and msg.reason and "3 attempts" in msg.reason
        # the conversation moves on once the poisoned message is out of the way
        bridge.wait_state(after, "completed", timeout=30)
        quarantined = bridge.cli("quarantine", "list").stdout
        assert str(mid) in quarantined


def test_rate_limit_waits_without_restart(tmp_path: Path) -> None:
    # the reset time the CLI prints has minute precision: "now" means "any moment"
    reset = datetime.datetime.now().strftime("%I:%M%p").lstrip("0").lower()
    agents = default_agents(rate_limit_recheck=2, env={"FAKE_AGENT_RESET": reset})
    with running_bridge(tmp_path, agents=agents) as bridge:
        mid = bridge.send("quota #fake:ratelimit@1")
        wait_for(
            lambda: bridge.status()["agents"]["demo"]["health"] == "waiting",
            what="waiting on the rate limit",
        )
        assert "rate-limited until" in bridge.status()["agents"]["demo"]["detail"]
        msg = bridge.wait_state(mid, "completed", timeout=60)
        assert msg.attempt == 2
        status = bridge.status()["agents"]["demo"]
        assert status["restarts"] == 0
        assert any(e["kind"] == "api_error" for e in bridge.events(mid))


def test_permission_prompt_waits(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        mid = bridge.send("may I? #fake:permission")
        wait_for(
            lambda: bridge.status()["agents"]["demo"]["health"] == "waiting",
            what="waiting for permission",
        )
        assert bridge.message(mid).state == "accepted"
        subprocess.run(["tmux", "-L", bridge.socket, "send-keys", "-t", "ab-demo", "1"], check=True)
        msg = bridge.wait_state(mid, "completed", timeout=30)
        assert msg.attempt == 1
        assert bridge.status()["agents"]["demo"]["restarts"] == 0


def test_crash_loop_trips_the_breaker(tmp_path: Path) -> None:
    agents = default_agents(
        max_restarts=2, restart_window=120, command=["/bin/sh", "-c", "exit 7"], launch_grace=2
    )
    bridge = Bridge(tmp_path, agents=agents)
    try:
        bridge.start(wait_healthy=False)
        bridge.wait_health("degraded", timeout=60)
        mid = bridge.send("anyone there?")
        assert "crash loop" in bridge.status()["agents"]["demo"]["detail"]
        assert bridge.message(mid).state == "queued"  # kept, not lost, not failed
    finally:
        bridge.stop()


def test_simulated_wake_runs_one_recovery(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        pid = bridge.pane_pid()
        os.kill(pid, signal.SIGSTOP)  # the agent froze "while the laptop slept"
        os.kill(pid, signal.SIGKILL)
        answer = subprocess.run(
            [*bridge.cli_argv(), "status", "--json"],
            env=bridge.env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert answer.returncode == 0
        import asyncio

        from agentbridge.supervisor.control import request

        reply = asyncio.run(request(bridge.config, "simulate-wake", slept=120))
        assert reply is not None and reply["wakes"] == 1
        bridge.wait_health("healthy")
        mid = bridge.send("after the wake")
        assert bridge.cli("wait", str(mid), "--timeout", "30").stdout.strip() == (
            "echo: after the wake"
        )
        assert bridge.status()["agents"]["demo"]["restarts"] == 1


BOUNDARIES = [
    "after_claim",
    "after_paste",
    "after_enter",
    "after_accept",
    "before_complete",
    "after_outbox_row",
    "during_send",
]


@pytest.mark.parametrize("point", BOUNDARIES)
def test_supervisor_sigkill_at_each_boundary(tmp_path: Path, point: str) -> None:
    bridge = Bridge(tmp_path)
    try:
        bridge.start(crash_at=point)
        mid = bridge.send(f"survive {point}")
        wait_for(
            lambda: bridge.proc is not None and bridge.proc.poll() is not None,
            timeout=30,
            what=f"supervisor to die at {point}",
        )
        assert bridge.proc is not None and bridge.proc.returncode == -signal.SIGKILL
        bridge.start()
        msg = bridge.wait_state(mid, "completed", timeout=40)
        assert msg.reply == f"echo: survive {point}"
        prompts = transcript_prompts(bridge, mid)
        if point in ("before_complete", "after_outbox_row", "during_send"):
            assert prompts == [1], f"a completed turn was re-injected: {prompts}"
        else:
            assert len(prompts) <= 2
        replies = json.loads(bridge.cli("outbox", "--json").stdout)
        mine = [r for r in replies if r["message_id"] == mid]
        assert len(mine) == 1
        if point == "during_send":
            assert mine[0]["state"] == "unknown"  # never blindly resent
        else:
            wait_for(
                lambda: json.loads(bridge.cli("outbox", "--json").stdout)[0]["state"] == "sent",
                what="reply sent",
            )
    finally:
        bridge.stop()


def test_supervisor_sigkill_after_ingest_loses_nothing(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path)
    try:
        ids = [bridge.send(f"queued while down {i}") for i in range(5)]
        bridge.start()
        for mid in ids:
            assert bridge.wait_state(mid, "completed", timeout=40).attempt == 1
    finally:
        bridge.stop()


def test_missing_agent_cli_is_one_clear_line_and_loses_nothing(tmp_path: Path) -> None:
    agents = {"main": {"runtime": "claude-code", "command": ["no-such-claude-cli"]}}
    bridge = Bridge(tmp_path, agents=agents)
    try:
        bridge.start(wait_healthy=False)
        bridge.wait_health("degraded", timeout=30)
        detail = bridge.status()["agents"]["main"]["detail"]
        assert "'no-such-claude-cli' not found" in detail and "command" in detail
        mid = bridge.send("kept for later")
        assert bridge.message(mid).state == "queued"
        assert bridge.status()["agents"]["main"]["restarts"] == 0  # no restart loop
        assert "not found on the agent's PATH" in bridge.log_path.read_text()
    finally:
        bridge.stop()


def test_agent_dying_at_startup_says_why(tmp_path: Path) -> None:
    agents = default_agents(
        command=["/bin/sh", "-c", "echo config file is broken; exit 7"],
        max_restarts=1,
        launch_grace=2,
    )
    bridge = Bridge(tmp_path, agents=agents)
    try:
        bridge.start(wait_healthy=False)
        bridge.wait_health("degraded", timeout=60)
        assert "config file is broken" in bridge.status()["agents"]["demo"]["detail"]
    finally:
        bridge.stop()
