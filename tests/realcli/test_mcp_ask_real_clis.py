"""``ask`` with the real CLIs: the model calls the bridge's ``ask`` tool mid-turn, the answer
is typed into the web console, and the CLI hands it back to the model as the tool's result.

The mock model answers ``#mock:mcp=ask:<question>`` with a call of the ``ask`` tool the CLI
offered it; the call blocks (the CLI must let a tool wait for a person: Codex is given
``tool_timeout_sec``) until the console's next message in that conversation answers it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import Bridge, wait_for
from test_mcp_ask import console, post

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread
from .test_mcp_real_clis import _agent

pytestmark = pytest.mark.realcli
__all__ = ["mock_in_thread"]  # the fixture, imported to be found here


@pytest.mark.parametrize("runtime", ["claude-code", "codex"])
def test_the_model_asks_and_gets_the_consoles_answer(
    runtime: str, agent_clis: AgentClis, mock_in_thread: MockModelServer, tmp_path: Path
) -> None:
    mock = mock_in_thread
    agents = {"agent": _agent(runtime, agent_clis, mock, tmp_path)}
    bridge = Bridge(tmp_path / "bridge", agents=agents, console=True)
    try:
        bridge.start()
        where = console(bridge)
        sent = post(where, "phone", "#mock:mcp=ask:Which database?", "job-1", agent="agent")
        mid = int(sent["message"]["id"])

        def question() -> dict[str, object] | None:
            items = json.loads(bridge.cli("outbox", "--json").stdout)
            return next(
                (i for i in items if i["idem_key"].endswith(":question") and i["state"] == "sent"),
                None,
            )

        try:
            item = wait_for(question, timeout=120, what="the question sent")
        except AssertionError as exc:
            calls = [(r.path, r.tool_command, r.answer) for r in mock.requests]
            raise AssertionError(f"{exc}\nmock: {calls}\n{bridge.log_tail()}") from None
        assert item["message_id"] == mid and "Which database?" in str(item["text"])
        answered = post(where, "phone", "postgres, please", "answer-1", agent="agent")
        assert answered["created"] is False and answered["message"]["id"] == mid
        msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=120)
        assert msg.state == "completed", (msg.state, msg.reason, bridge.log_tail())
        calls = [r.tool_command for r in mock.requests if r.tool_command]
        assert any(c and c.endswith("ask") and "agentbridge" in c for c in calls), calls
        results = [json.dumps(r.body) for r in mock.requests if r.body]
        assert any("answer from web: postgres, please" in b for b in results)  # the tool result
        assert msg.reply in {r.answer for r in mock.requests if r.answer}, msg.reply
        assert all(m.text != "postgres, please" for m in bridge.messages())
    finally:
        bridge.stop()
