"""Chat commands and ``send`` across a fleet: two real supervisors, one real PostgreSQL.

A command about an agent, sent on the node that does not run it, is stored in the lane of the
agent's node, handled there against its worker, and its answer is the command's reply (the
sender's conversation gets it). While the agent's node is down, commands and messages for it
are accepted and wait durably; they are handled once the node is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.ledger.store import AskState
from agentbridge.testing.postgres import (
    PostgresServer,
    fresh_database,
    private_server,
)
from fleet_harness import Node, db, demo, events, pid_of, start_all, stop_all, wait_for
from test_mcp_ask import AskCall

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A private server of this module's own."""
    with private_server() as started:
        yield started


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    with fresh_database(server, "ab_fleet_commands") as made:
        yield made


def answer(node: Node, mid: int) -> str:
    """The command's answer once it completed (its reply)."""
    done = node.wait_state(mid, "completed", timeout=30)
    return str(done.reply)


def test_commands_reach_the_agents_node_and_wait_for_it_while_it_is_down(
    tmp_path: Path, url: str
) -> None:
    agents = {"a1": demo(node="A"), "b1": demo(node="B")}
    a = Node(tmp_path, url, "A", agents)
    b = Node(tmp_path, url, "B", agents)
    try:
        start_all(a, b)
        long = b.ingest("#fake:slow=60 a long turn", "a1")
        a.wait_state(long, "accepted")
        stop = b.send("/stop", "--agent", "a1")  # on B; a1's pane is on A's tmux server
        said = answer(b, stop)
        assert said == f"stopped: message {long} ended interrupted (it is not re-run)", said
        assert a.message(long).state == "interrupted"
        assert a.message(stop).agent == "@commands:A"
        handled = [e for e in events(url, stop) if e.kind == "command"]
        assert handled and f":{pid_of(a)}:" in handled[0].actor, handled
        status = answer(b, b.send("/status", "--agent", "a1"))
        assert status.startswith("agent a1 (demo): healthy"), status
        assert "answered by node A; fleet: A alive, B alive" in status, status
        listed = answer(b, b.send("/agents", "--agent", "b1")).splitlines()
        assert any(line.endswith("a1: healthy") or "a1: on node A" in line for line in listed)
        assert any(line.endswith("b1: healthy") or "b1: on node B" in line for line in listed)
        assert sum("on node" in line for line in listed) == 1, listed  # the other one's
        a.die()
        queued = b.send("/status", "--agent", "a1")  # accepted while A is down: it waits
        hello = b.send("for a1 while A is down", "--agent", "a1")
        assert b.message(queued).state == b.message(hello).state == "queued"
        a.start_node()
        later = answer(b, queued)
        assert "answered by node A" in later, later
        b.wait_state(hello, "completed", timeout=40)
    finally:
        stop_all(a, b)


def test_an_ask_answered_on_another_node_reaches_the_waiting_tool(tmp_path: Path, url: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    agents = {"demo": demo(node="A", cwd=str(project))}
    mcp = {"mcp": {"notify_channel": "local", "notify_conversation": "ops"}}
    a = Node(tmp_path, url, "A", agents, extra=mcp)
    b = Node(tmp_path, url, "B", agents, extra=mcp)
    try:
        start_all(a, b)
        b.send("before any ask", "--conversation", "ops")  # B's relay loads its asks now
        call = AskCall(a, project, question="Deploy now?", choices=["yes", "no"])
        wait_for(lambda: db(url, lambda s: s.list_asks(AskState.PENDING)), "A's agent asked")
        assert b.send("1", "--conversation", "ops") == 0  # on B: the answer, not a message
        failed, text = call.outcome()
        assert not failed and text.startswith("answer from ") and text.endswith(": yes"), text
        [ask] = db(url, lambda s: s.list_asks())
        assert (ask.state, ask.answer, ask.agent) == (AskState.ANSWERED, "yes", "demo")
        assert all(m.text != "1" for m in a.messages()), "never queued to the agent"
    finally:
        stop_all(a, b)
