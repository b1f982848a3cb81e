"""Long messages reach the model whole, through the whole bridge, on the real CLIs.

12 kB and 100 kB messages, each ending in a unique marker, go through ``agentbridge up`` to the
real Claude Code and Codex. ``paste``: the runtimes' measured paste limits (both far above
100 kB) paste them whole, so a model request holds every character. ``file``: with
``injection.spill_threshold = 8000`` they go to ``.agentbridge/inbox/<id>.md`` under the
agent's cwd; the CLI reads it with no permission prompt (the mock answers the pointer with a
``Read`` / ``cat`` tool call) and the follow-up request's tool result holds every character.
Either way the inbox is empty afterwards.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentbridge.agent import inbox
from agentbridge.sanitize import sanitize_text
from agentbridge.testing.mock_model import MockModelServer
from agentbridge.testing.realcli import claude_agent, codex_agent
from bridge_harness import Bridge

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread  # noqa: F401  (a fixture)

pytestmark = pytest.mark.realcli

#: Claude's Read shows each line as "<number>\t<line>" (or "<number>→<line>")
_NUMBERED = re.compile(r"^ *\d+(?:\t|→)", re.MULTILINE)


def long_body(size: int) -> str:
    """``size`` chars of 100-char lines ending in a unique marker."""
    marker = f"END-OF-MESSAGE-{uuid.uuid4().hex}"
    lines = [f"{i:06d} " + "x" * 92 for i in range((size - len(marker)) // 100)]
    return "\n".join(lines) + "\n" + marker


def _tool_outputs(body: dict[str, Any]) -> list[str]:
    """The file text each tool result in a request shows, in order: Claude ``tool_result``
    blocks (line numbers and reminders removed), Codex ``function_call_output`` (its header
    removed; a truncated output keeps its warning, so it never matches)."""
    out: list[str] = []

    def texts(content: Any) -> str:
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(b["text"] for b in content if isinstance(b, dict) and "text" in b)
        return ""

    for item in body.get("messages") or body.get("input") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            out.append(texts(item.get("output")).split("Output:\n", 1)[-1].rstrip("\n"))
        for block in item.get("content") if isinstance(item.get("content"), list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                text = texts(block.get("content")).split("<system-reminder>", 1)[0]
                out.append(_NUMBERED.sub("", text).rstrip("\n"))
    return out


def delivered(mock: MockModelServer, text: str) -> str | None:
    """How ``text`` reached the model whole: "prompt", "tool result" (the chunks read, in
    order), or None."""
    want = sanitize_text(text)
    for request in mock.requests:
        if not request.body:
            continue
        if want in request.user_text:
            return "prompt"
        if want in "\n".join(_tool_outputs(request.body)):
            return "tool result"
    return None


def _agents(clis: AgentClis, mock: MockModelServer, root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for spec in (
        claude_agent(clis.claude, mock.base_url, root),
        codex_agent(clis.codex, mock.base_url, root),
    ):
        out[spec.name] = {
            "runtime": spec.runtime,
            "command": spec.command,
            "cwd": str(spec.cwd),
            "env": spec.env,
            "launch_grace": 60,
            "resume": False,
        }
    return out


@pytest.mark.parametrize("mode", ["paste", "file"])
def test_long_messages_reach_the_model_whole(
    agent_clis: AgentClis,
    mock_in_thread: MockModelServer,  # noqa: F811
    tmp_path: Path,
    mode: str,
) -> None:
    mock = mock_in_thread
    agents = _agents(agent_clis, mock, tmp_path)
    extra = {"injection": {"spill_threshold": 8000}} if mode == "file" else {}
    bridge = Bridge(tmp_path / "bridge", agents=agents, extra=extra)
    cwd = Path(agents["claude"]["cwd"]).resolve()
    try:
        bridge.start()
        sent = []
        for size in (12_000, 100_000):
            for agent in ("claude", "codex"):
                body = long_body(size)
                sent.append((agent, size, body, bridge.send(body, "--agent", agent)))
        for agent, size, body, mid in sent:
            msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=120)
            assert msg.state == "completed", (agent, size, msg.state, msg.reason)
            how = delivered(mock, body)
            assert how == ("prompt" if mode == "paste" else "tool result"), (agent, size, how)
            assert not (cwd / inbox.relative(mid)).exists()
        assert inbox.pending_ids(cwd) == []
        status = bridge.status()
        for agent in ("claude", "codex"):
            assert status["agents"][agent]["restarts"] == 0
            assert status["agents"][agent]["health"] == "healthy"  # no permission prompt
    finally:
        bridge.stop()
