"""Esc in the pane of the real Claude Code (and Codex) under `agentbridge up`: an interrupt.

The mock model answers the message late (``#mock:slow=``); Escape is pressed in the agent's
pane while the model request is open. The message must end ``interrupted`` (attempt 1, the
model asked exactly once for it, never re-run), and the next message must still be answered.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import Bridge, wait_for

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread  # noqa: F401  (a fixture)
from .test_real_clis import CODEX_CONFIG

pytestmark = [
    pytest.mark.realcli,
    # Known gap (issue 9 §6, left open): real Claude Code 2.1.197 records nothing on an Esc
    # before any answer (it rewinds the turn and puts the prompt back in the box, status idle),
    # and the Codex run stayed "claimed"; the bridge does not detect either yet. The mock's open
    # slow request also outlives the fixture's 10 s shutdown. Unskip once detection lands.
    pytest.mark.skip(reason="real-CLI interrupt detection not done yet (see comment)"),
]


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


def asked_for(mock: MockModelServer, mid: int) -> list[object]:
    """Model requests whose newest user text is this message's prompt."""
    return [r for r in mock.requests if r.user_text.startswith(f"[agentbridge message={mid} ")]


@pytest.mark.parametrize("runtime", ["claude-code", "codex"])
def test_escape_in_a_real_cli_ends_the_message_interrupted(
    runtime: str,
    agent_clis: AgentClis,
    mock_in_thread: MockModelServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    mock = mock_in_thread
    bridge = Bridge(
        tmp_path / "bridge", agents={"agent": _agent(runtime, agent_clis, mock, tmp_path)}
    )
    try:
        bridge.start(wait_healthy=False)
        bridge.wait_health("healthy", timeout=90)
        mid = bridge.send("think about this for a long time #mock:slow=60")
        bridge.wait_state(mid, "accepted", timeout=60)
        wait_for(lambda: asked_for(mock, mid), timeout=30, what="the model request")
        subprocess.run(
            ["tmux", "-L", bridge.socket, "send-keys", "-t", "ab-agent", "Escape"], check=True
        )
        msg = bridge.wait_state(mid, "interrupted", "completed", "queued", timeout=30)
        assert msg.state == "interrupted", (msg.state, bridge.log_tail())
        assert msg.attempt == 1
        nxt = bridge.send("a quick one after the interrupt")
        done = bridge.wait_state(nxt, "completed", "failed", timeout=90)
        assert done.state == "completed", bridge.log_tail()
        assert done.reply and "mock answer" in done.reply
        assert len(asked_for(mock, mid)) == 1  # never re-run
        assert bridge.message(mid).state == "interrupted"
    finally:
        bridge.stop()
