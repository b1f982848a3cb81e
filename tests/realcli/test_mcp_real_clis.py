"""``agentbridge mcp`` with the real CLIs: the model calls the bridge's ``reply`` tool mid-turn.

The mock model answers ``#mock:mcp=reply:<text>`` with a call of the tool the CLI offered it
(found by name in the request's tool list, so the CLI really registered our server), then
its usual answer. The progress reply must reach the channel as an outbox row correlated to
the message in flight, and the turn still completes with the model's final answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import Bridge, wait_for

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread
from .test_real_clis import CODEX_CONFIG

pytestmark = pytest.mark.realcli
__all__ = ["mock_in_thread"]  # the fixture, imported to be found here


def _agent(
    runtime: str, clis: AgentClis, mock: MockModelServer, tmp_path: Path
) -> dict[str, object]:
    home = tmp_path / "agent-home"
    proxy = {
        "HTTPS_PROXY": mock.base_url,
        "HTTP_PROXY": mock.base_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    common = {"cwd": str(tmp_path / "work"), "launch_grace": 60, "resume": False}
    if runtime == "claude-code":
        env = {"HOME": str(home), "ANTHROPIC_BASE_URL": mock.base_url,
               "ANTHROPIC_AUTH_TOKEN": "sk-test", **proxy}  # fmt: skip
        return {"runtime": runtime, "command": [str(clis.claude)], "env": env, **common}
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=mock.base_url))
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "MOCK_API_KEY": "sk-test", **proxy}
    return {"runtime": runtime, "command": [str(clis.codex)], "env": env, **common}


@pytest.mark.parametrize("runtime", ["claude-code", "codex"])
def test_the_model_calls_reply_and_it_reaches_the_channel(
    runtime: str, agent_clis: AgentClis, mock_in_thread: MockModelServer, tmp_path: Path
) -> None:
    mock = mock_in_thread
    agents = {"agent": _agent(runtime, agent_clis, mock, tmp_path)}
    bridge = Bridge(tmp_path / "bridge", agents=agents)
    try:
        bridge.start()
        text = "#mock:mcp=reply:working: step 1 of 2"
        mid = bridge.send(text, "--conversation", "phone")
        msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=120)
        calls = [r.tool_command for r in mock.requests if r.tool_command]
        assert msg.state == "completed", (msg.state, msg.reason, calls, bridge.log_tail())
        assert any(c and c.endswith("reply") and "agentbridge" in c for c in calls), calls

        def progress() -> dict[str, object] | None:
            import json

            items = json.loads(bridge.cli("outbox", "--json").stdout)
            return next(
                (i for i in items if i["text"] == "working: step 1 of 2" and i["state"] == "sent"),
                None,
            )

        item = wait_for(progress, what="the progress reply sent")
        assert item["message_id"] == mid and item["conversation"] == "phone"
        assert any(e["kind"] == "mcp-reply" for e in bridge.events(mid))
        # the turn went on after the tool: it ended with the model's own final answer
        assert msg.reply in {r.answer for r in mock.requests if r.answer}, msg.reply
    finally:
        bridge.stop()
