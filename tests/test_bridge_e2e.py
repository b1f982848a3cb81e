"""The whole bridge, as a user runs it: `agentbridge up` with the demo agent, then the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bridge_harness import Bridge, default_agents, running_bridge, wait_for

pytestmark = pytest.mark.slow


def test_send_wait_reply_and_history(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        first = bridge.send("hello there")
        second = bridge.send("line one\nline two\n\ttabbed")
        done = bridge.cli("wait", str(first), "--timeout", "30")
        assert done.stdout.strip() == "echo: hello there"
        done = bridge.cli("wait", str(second), "--timeout", "30")
        assert done.stdout.rstrip("\n") == "echo: line one\nline two\n\ttabbed"
        history = [
            (e["from_state"], e["to_state"])
            for e in bridge.events(first)
            if e["kind"] == "transition"
        ]
        start = [(None, "queued"), ("queued", "claimed")]
        assert history in (
            [
                *start,
                ("claimed", "submitted"),
                ("submitted", "accepted"),
                ("accepted", "completed"),
            ],
            [*start, ("claimed", "accepted"), ("accepted", "completed")],
            # prompt and turn end in one read (the demo answers at once): one commit for both
            [*start, ("claimed", "submitted"), ("submitted", "completed")],
            [*start, ("claimed", "completed")],
        ), history
        completion = next(e for e in bridge.events(first) if e.get("to_state") == "completed")
        if ("submitted", "accepted") not in history and ("claimed", "accepted") not in history:
            assert completion["detail"].endswith("(the prompt with it, in the transcript)")
        # the reply went through the outbox to the local channel
        wait_for(
            lambda: bridge.cli("outbox", "--json").stdout.count('"sent"') == 2,
            what="both replies sent",
        )
        status = bridge.status()
        assert status["agents"]["demo"]["health"] == "healthy"
        assert status["messages"]["completed"] == 2


def test_idempotent_send_and_conflict(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path)  # no supervisor needed: the CLI writes the ledger itself
    try:
        a = bridge.send("same", "--key", "k1")
        b = bridge.send("same", "--key", "k1")
        assert a == b
        clash = bridge.cli("send", "--key", "k1", "other text", check=False)
        assert clash.returncode != 0
        assert clash.stderr.count("\n") == 1 and "idempotency key" in clash.stderr
    finally:
        bridge.stop()


def test_wait_exit_codes_and_timeout(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path)
    try:
        mid = bridge.send("nobody will answer: no supervisor runs")
        timed_out = bridge.cli("wait", str(mid), "--timeout", "0.3", check=False)
        assert timed_out.returncode == 5
        bridge.cli("quarantine", "list")
        dropped = bridge.cli("messages", "--json")
        assert '"queued"' in dropped.stdout
    finally:
        bridge.stop()


def test_second_supervisor_refuses(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        second = subprocess.run(
            [*bridge.cli_argv(), "up"],
            env=bridge.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr


def test_several_agents_with_routing(tmp_path: Path) -> None:
    agents = {**default_agents(), "other": {"runtime": "demo", "launch_grace": 20}}
    with running_bridge(tmp_path, agents=agents) as bridge:
        a = bridge.send("to demo", "--agent", "demo")
        b = bridge.send("to other", "--agent", "other")
        assert bridge.cli("wait", str(a), "--timeout", "30").stdout.strip() == "echo: to demo"
        assert bridge.cli("wait", str(b), "--timeout", "30").stdout.strip() == "echo: to other"
        assert bridge.message(b).agent == "other"


def test_agent_reply_command_is_idempotent_and_announced(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        mid = bridge.send("please answer twice")
        bridge.cli("wait", str(mid), "--timeout", "30")
        prompt = next(
            line
            for path in bridge.state_dir.rglob("*.jsonl")
            if "projects" in path.parts
            for line in path.read_text().splitlines()
            if f"message={mid} " in line
        )
        assert f"reply {mid} " in prompt  # the envelope tells the agent how to reply
        bridge.cli("reply", str(mid), "an extra answer", "--key", "extra-1")
        bridge.cli("reply", str(mid), "an extra answer", "--key", "extra-1")  # retried: no dup
        clash = bridge.cli("reply", str(mid), "different", "--key", "extra-1", check=False)
        assert clash.returncode == 1

        def extras() -> list[dict[str, object]]:
            rows = json.loads(bridge.cli("outbox", "--json").stdout)
            return [r for r in rows if r["message_id"] == mid]

        wait_for(lambda: [r["state"] for r in extras()] == ["sent", "sent"], what="2 sent")
        assert sorted(str(r["text"]) for r in extras()) == [
            "an extra answer",
            "echo: please answer twice",
        ]


def _transcripts(bridge: Bridge) -> list[Path]:
    return [p for p in bridge.state_dir.rglob("*.jsonl") if "projects" in p.parts]


def test_human_typing_is_not_clobbered_and_human_turns_are_ignored(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        tmux = ["tmux", "-L", bridge.socket]
        subprocess.run([*tmux, "send-keys", "-t", "ab-demo", "-l", "a human is typing"], check=True)
        wait_for(lambda: "a human is typing" in bridge.capture(), what="human text on screen")
        mid = bridge.send("from the bridge")
        wait_for(
            lambda: any("released" in e["detail"] for e in bridge.events(mid)),
            what="the bridge backs off instead of pasting over the human",
        )
        assert "from the bridge" not in bridge.capture()
        subprocess.run([*tmux, "send-keys", "-t", "ab-demo", "Enter"], check=True)
        msg = bridge.wait_state(mid, "completed", timeout=30)
        assert msg.reply == "echo: from the bridge" and msg.attempt == 1
        wait_for(
            lambda: bridge.status()["agents"]["demo"]["human_turns"] >= 1,
            what="the human turn was seen and ignored",
        )


def test_corrupt_transcript_line_is_skipped(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        first = bridge.send("first")
        bridge.wait_state(first, "completed")
        wait_for(lambda: _transcripts(bridge), what="a transcript file")
        with _transcripts(bridge)[0].open("ab") as handle:
            handle.write(b'{"type": "user", "message": \xff\xfe not json at all\n')
        second = bridge.send("second")
        assert bridge.wait_state(second, "completed").reply == "echo: second"
        wait_for(
            lambda: bridge.status()["agents"]["demo"]["corrupt_lines"] >= 1,
            what="the corrupt line counted",
        )
