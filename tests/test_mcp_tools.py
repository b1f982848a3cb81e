"""``agentbridge mcp``: the agent's tools, as the agent's CLI runs them, against a real bridge.

The MCP server is the command the bridge registered for the agent (read back from the
``--mcp-config`` file it wrote), spawned and driven by the ``mcp`` SDK's own stdio client,
against a real ``agentbridge up`` with the fake agent in tmux.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from agentbridge.delivery.attachments import file_ref
from agentbridge.models import OutboxItem
from agentbridge.states import OutboxState
from bridge_harness import Bridge, default_agents, running_bridge, wait_for

pytestmark = pytest.mark.slow


def registered_command(bridge: Bridge, agent: str = "demo") -> tuple[str, list[str]]:
    """The stdio server the bridge put into the agent's Claude ``--mcp-config`` file."""
    path = bridge.state_dir / "agents" / agent / "claude-mcp.json"
    server = json.loads(path.read_text())["mcpServers"]["agentbridge"]
    return server["command"], server["args"]


def call_tools(
    command: str, args: list[str], calls: list[tuple[str, dict[str, Any]]], cwd: Path
) -> list[tuple[bool, str]]:
    """Run the MCP server once and make ``calls``: (is_error, text) for each."""

    async def run() -> list[tuple[bool, str]]:
        params = StdioServerParameters(command=command, args=args, cwd=cwd)
        out: list[tuple[bool, str]] = []
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"reply", "send_file", "notify", "list_conversations"} <= names
            for name, arguments in calls:
                result = await session.call_tool(name, arguments)
                text = "".join(getattr(block, "text", "") for block in result.content)
                out.append((result.is_error, text))
        return out

    return asyncio.run(run())


def replies(bridge: Bridge) -> list[OutboxItem]:
    return [
        OutboxItem(**{**item, "state": OutboxState(item["state"])})
        for item in json.loads(bridge.cli("outbox", "--json").stdout)
    ]


def bridge_kwargs(project: Path, **mcp: Any) -> dict[str, Any]:
    """One demo agent working in ``project``; its own messages go to local:ops."""
    table = {"notify_channel": "local", "notify_conversation": "ops", **mcp}
    return {"agents": default_agents(cwd=str(project)), "extra": {"mcp": table}}


def test_reply_during_a_turn_answers_that_message(tmp_path: Path) -> None:
    project = tmp_path / "project"
    with running_bridge(tmp_path, **bridge_kwargs(project)) as b:
        message = b.send("#fake:slow=15 a long job", "--conversation", "alice")
        wait_for(
            lambda: b.status()["agents"]["demo"]["in_flight_message"] == message,
            what="message in flight",
        )
        command, args = registered_command(b)
        assert "--agent" in args and args[args.index("--agent") + 1] == "demo"
        [(failed, text), (_, listing)] = call_tools(
            command,
            args,
            [("reply", {"text": "working: 1/3 done"}), ("list_conversations", {})],
            project,
        )
        assert not failed, text
        assert f"as a reply to message {message}" in text
        item = wait_for(
            lambda: next(
                (
                    r
                    for r in replies(b)
                    if r.text == "working: 1/3 done" and r.state == OutboxState.SENT
                ),
                None,
            ),
            what="progress reply sent",
        )
        assert item.message_id == message
        assert item.conversation == "alice" and item.channel == "local"
        assert not item.idem_key.startswith("agent-initiated:")
        assert any(e["kind"] == "mcp-reply" for e in b.events(message))
        seen = json.loads(listing)
        assert seen["in_flight_message"] == message
        assert seen["default"] == {"channel": "local", "conversation": "ops"}
        assert any(c["conversation"] == "alice" and c["current"] for c in seen["conversations"])


def test_notify_without_a_turn_is_agent_initiated_and_rate_limited(tmp_path: Path) -> None:
    project = tmp_path / "project"
    with running_bridge(tmp_path, **bridge_kwargs(project, rate_per_minute=2)) as b:
        command, args = registered_command(b)
        results = call_tools(
            command,
            args,
            [
                ("notify", {"text": "tests finished"}),
                ("reply", {"text": "nobody asked, still fine"}),
                ("notify", {"text": "one too many"}),
            ],
            project,
        )
        assert [failed for failed, _ in results] == [False, False, True], results
        assert "agent-initiated" in results[0][1]
        assert "rate limit: 2 agent-initiated messages per minute" in results[2][1]
        sent = wait_for(
            lambda: (
                (items := [r for r in replies(b) if r.state == OutboxState.SENT])
                and len(items) == 2
                and items
            ),
            what="both agent-initiated messages sent",
        )
        assert {r.text for r in sent} == {"tests finished", "nobody asked, still fine"}
        for item in sent:
            assert item.idem_key.startswith("agent-initiated:demo:")
            assert (item.channel, item.conversation, item.message_id) == ("local", "ops", None)
        assert all(r.text != "one too many" for r in replies(b))


def test_send_file_only_under_the_agent_cwd(tmp_path: Path) -> None:
    project = tmp_path / "project"
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    with running_bridge(tmp_path, **bridge_kwargs(project, max_file_bytes=1000)) as b:
        (project / "report.txt").write_text("all green\n")
        (project / "big.bin").write_bytes(b"x" * 1001)
        (project / "link.txt").symlink_to(outside)
        command, args = registered_command(b)
        results = call_tools(
            command,
            args,
            [
                ("send_file", {"path": "report.txt", "caption": "the report"}),
                ("send_file", {"path": str(outside)}),
                ("send_file", {"path": "../secret.txt"}),
                ("send_file", {"path": "link.txt"}),
                ("send_file", {"path": "big.bin"}),
            ],
            project,
        )
        assert results[0][0] is False, results[0]
        for failed, text in results[1:4]:
            assert failed and "outside the agent's directory" in text, text
        assert results[4][0] and "over the 1000-byte limit" in results[4][1]
        item = wait_for(
            lambda: next((r for r in replies(b) if r.state == OutboxState.SENT), None),
            what="file item sent",
        )
        ref = file_ref(item)
        assert ref is not None, item
        assert ref.path == (project / "report.txt").resolve() and ref.size == 10
        assert ref.caption == "the report"
        assert len(replies(b)) == 1


def test_a_bad_socket_is_a_clear_tool_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.sock"
    args = ["-m", "agentbridge.cli", "mcp", "--agent", "demo", "--socket", str(missing)]
    [(failed, text)] = call_tools(sys.executable, args, [("reply", {"text": "hi"})], tmp_path)
    assert failed
    assert f"not reachable at {missing}" in text and "agentbridge up" in text
