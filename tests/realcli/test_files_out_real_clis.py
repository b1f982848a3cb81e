"""A file back from a real CLI: the model calls ``send_file``, the console offers the download.

The message comes in through the bridge's console; the mock model answers
``#mock:mcp=send_file:<path>`` with a call of the ``send_file`` tool the CLI offered it; the
bridge's relay reads the file from the agent's cwd and the console serves it, behind its token.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import Bridge, wait_for
from test_routes_channels import call

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread
from .test_mcp_real_clis import _agent

pytestmark = pytest.mark.realcli
__all__ = ["mock_in_thread"]  # the fixture, imported to be found here


@pytest.mark.parametrize("runtime", ["claude-code", "codex"])
def test_the_model_sends_a_file_and_the_console_serves_it(
    runtime: str, agent_clis: AgentClis, mock_in_thread: MockModelServer, tmp_path: Path
) -> None:
    mock = mock_in_thread
    agents = {"agent": _agent(runtime, agent_clis, mock, tmp_path)}
    bridge = Bridge(tmp_path / "bridge", agents=agents, console=True)
    (tmp_path / "work" / "summary.txt").write_bytes(b"3 files changed\n")
    try:
        bridge.start()
        base = wait_for(
            lambda: re.findall(
                r"agentbridge: web at (http://127\.0\.0\.1:\d+)", bridge.log_path.read_text()
            ),
            what="the console url",
        )[-1]
        token = (bridge.state_dir / "channels/web/console.token").read_text().strip()
        body = {
            "text": "#mock:mcp=send_file:summary.txt",
            "agent": "agent",
            "conversation": "phone",
            "key": "k-file",
        }
        code, sent = call("POST", base + "/api/send", token, body)
        assert code == 200, sent
        mid = int(sent["message"]["id"])
        msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=120)
        calls = [r.tool_command for r in mock.requests if r.tool_command]
        assert msg.state == "completed", (msg.state, msg.reason, calls, bridge.log_tail())
        assert any(c and c.endswith("send_file") for c in calls), (calls, bridge.log_tail())

        def file_sent() -> dict[str, Any] | None:
            files = call("GET", f"{base}/api/messages/{mid}", token)[1]["files"]
            return next((f for f in files if f["state"] == "sent"), None)

        found = wait_for(file_sent, what="the file row sent")
        assert found["name"] == "summary.txt" and found["size"] == 16
        request = urllib.request.Request(
            base + found["url"], headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            assert response.read() == b"3 files changed\n"
        assert any(e["kind"] == "mcp-agent-file" for e in bridge.events(mid)), bridge.events(mid)
    finally:
        bridge.stop()
