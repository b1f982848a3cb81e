"""Esc in the pane of the real Claude Code and Codex under `agentbridge up`: an interrupt.

The mock model answers the message late (``#mock:slow=``); Escape is pressed in the agent's
pane while the model request is open. The message must end ``interrupted`` (attempt 1, the
model asked exactly once for it, never re-run) with an ``interrupted`` receipt, the prompt
Claude puts back into its box must be cleared, and the next message must still be answered.

What each CLI leaves (measured, see ``interrupts.py``): Codex writes ``turn_aborted`` to its
rollout; Claude Code 2.1.197 writes nothing before the answer's first token, so the bridge
reads the prompt put back in the box while the agent is idle. A CLI *killed* mid-turn is not
an interrupt: its message is a victim, replayed as attempt 2.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.testing.mock_model import MockModelServer, RecordedRequest
from bridge_harness import Bridge, wait_for

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread  # noqa: F401  (a fixture)
from .test_real_clis import CODEX_CONFIG

pytestmark = pytest.mark.realcli

RUNTIMES = ["claude-code", "codex"]


def _agent(kind: str, clis: AgentClis, mock: MockModelServer, tmp_path: Path) -> dict[str, object]:
    home = tmp_path / "agent-home"
    proxy = {"HTTPS_PROXY": mock.base_url, "HTTP_PROXY": mock.base_url, "NO_PROXY": "127.0.0.1"}
    common = {"cwd": str(tmp_path / "work"), "launch_grace": 60, "resume": False}
    if kind == "claude-code":
        env = {"HOME": str(home), "ANTHROPIC_BASE_URL": mock.base_url, "ANTHROPIC_AUTH_TOKEN": "sk"}
        return {"runtime": kind, "command": [str(clis.claude)], **common, "env": {**env, **proxy}}
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=mock.base_url))
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "MOCK_API_KEY": "sk"}
    return {"runtime": kind, "command": [str(clis.codex)], **common, "env": {**env, **proxy}}


def asked_for(mock: MockModelServer, mid: int, attempt: int = 1) -> list[RecordedRequest]:
    """Model requests whose newest user text is this attempt's prompt (not the title call)."""
    head = f"[agentbridge message={mid} attempt={attempt} "
    return [r for r in mock.requests if r.user_text.startswith(head)]


@contextlib.contextmanager
def slow_turn(
    runtime: str, clis: AgentClis, mock: MockModelServer, tmp_path: Path
) -> Iterator[tuple[Bridge, int]]:
    """A bridge on the real CLI whose message waits on the model (its request is open)."""
    bridge = Bridge(tmp_path / "bridge", agents={"agent": _agent(runtime, clis, mock, tmp_path)})
    try:
        bridge.start(wait_healthy=False)
        bridge.wait_health("healthy", timeout=90)
        mid = bridge.send("think about this for a long time #mock:slow=60")
        bridge.wait_state(mid, "accepted", timeout=60)
        wait_for(lambda: asked_for(mock, mid), timeout=30, what="the model request")
        yield bridge, mid
    finally:
        bridge.stop()


def press_escape(bridge: Bridge) -> None:
    subprocess.run(
        ["tmux", "-L", bridge.socket, "send-keys", "-t", "ab-agent", "Escape"], check=True
    )


def _box(bridge: Bridge, runtime: str) -> str | None:
    from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile

    profile = ClaudeCodeProfile() if runtime == "claude-code" else CodexProfile()
    return profile.screen_state(bridge.capture("agent")).input_text


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_escape_in_a_real_cli_ends_the_message_interrupted(
    runtime: str,
    agent_clis: AgentClis,
    mock_in_thread: MockModelServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    mock = mock_in_thread
    with slow_turn(runtime, agent_clis, mock, tmp_path) as (bridge, mid):
        press_escape(bridge)
        msg = bridge.wait_state(mid, "interrupted", "completed", "queued", timeout=30)
        assert msg.state == "interrupted", (msg.state, bridge.log_tail())
        assert msg.attempt == 1 and msg.reason == "interrupted in the agent's pane"
        waited = bridge.cli("wait", str(mid), "--timeout", "5", check=False)
        assert waited.returncode == 6, waited
        # the prompt Claude put back is gone from the box (the next paste needs it empty)
        wait_for(lambda: _box(bridge, runtime) == "", timeout=10, what="an empty input box")
        nxt = bridge.send("a quick one after the interrupt")
        done = bridge.wait_state(nxt, "completed", "failed", timeout=90)
        assert done.state == "completed", bridge.log_tail()
        assert done.reply and "mock answer" in done.reply
        assert len(asked_for(mock, mid)) == 1  # never re-run
        assert not asked_for(mock, mid, attempt=2)
        assert bridge.message(mid).state == "interrupted"
        events = bridge.events(mid)
        kinds = [(e["kind"], e["to_state"]) for e in events]
        assert kinds.count(("transition", "queued")) == 1  # the ingest only: no requeue
        assert ("transition", "interrupted") in kinds
        if runtime == "claude-code":  # read from the screen: the audit trail says so
            notes = [e["detail"] for e in events if e["kind"] == "interrupt_evidence"]
            assert notes and "weak evidence" in notes[0], events


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_real_cli_killed_mid_turn_is_replayed_not_interrupted(
    runtime: str,
    agent_clis: AgentClis,
    mock_in_thread: MockModelServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    mock = mock_in_thread
    with slow_turn(runtime, agent_clis, mock, tmp_path) as (bridge, mid):
        os.kill(bridge.pane_pid("agent"), signal.SIGKILL)
        wait_for(lambda: asked_for(mock, mid, attempt=2), timeout=120, what="the replay's request")
        # the model may see the prompt before the bridge has recorded its submission
        wait_for(
            lambda: bridge.message(mid).state in ("submitted", "accepted", "completed"),
            timeout=30,
            what="the replay recorded as submitted",
        )
        msg = bridge.message(mid)
        assert msg.attempt == 2, msg
        kinds = [(e["kind"], e["to_state"]) for e in bridge.events(mid)]
        assert ("transition", "interrupted") not in kinds
        assert kinds.count(("transition", "queued")) == 2  # the ingest and the replay
        assert bridge.status()["agents"]["agent"]["last_recovery"]["replayed"] == [mid]
