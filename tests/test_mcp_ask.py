"""The MCP ``ask`` tool end to end: the registered stdio server, a real ``agentbridge up`` with
the fake agent in tmux and the web console, the answer typed into the console.

The tool call blocks until the answer, so it runs in a thread while the test answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from agentbridge.delivery.actions import reply_actions
from agentbridge.ledger.sqlite import Ledger
from agentbridge.ledger.store import Ask, AskState
from agentbridge.models import OutboxItem
from agentbridge.states import OutboxState
from bridge_harness import Bridge, wait_for
from test_mcp_tools import bridge_kwargs, registered_command, replies

pytestmark = pytest.mark.slow


class AskCall(threading.Thread):
    """One ``ask`` tool call through the agent's registered MCP server, in the background."""

    def __init__(self, bridge: Bridge, cwd: Path, **arguments: Any) -> None:
        super().__init__(daemon=True)
        self.command, self.args = registered_command(bridge)
        self.cwd, self.arguments = cwd, arguments
        self.result: tuple[bool, str] | None = None
        self.start()

    def run(self) -> None:
        async def call() -> tuple[bool, str]:
            params = StdioServerParameters(command=self.command, args=self.args, cwd=self.cwd)
            async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
                await session.initialize()
                result = await session.call_tool("ask", self.arguments)
                return result.is_error, "".join(getattr(b, "text", "") for b in result.content)

        self.result = asyncio.run(call())

    def outcome(self, timeout: float = 60) -> tuple[bool, str]:
        self.join(timeout)
        assert self.result is not None, "the ask call did not return"
        return self.result


def console(bridge: Bridge, log_from: int = 0) -> tuple[str, str]:
    """The console's address (the newest one the bridge printed) and its token."""
    url = wait_for(
        lambda: re.findall(
            r"agentbridge: web at (http://127\.0\.0\.1:\d+)",
            bridge.log_path.read_text()[log_from:],
        ),
        what="the console url",
    )[-1]
    return url, (bridge.state_dir / "channels/web/console.token").read_text().strip()


def post(
    where: tuple[str, str], conversation: str, text: str, key: str, agent: str = "demo"
) -> dict[str, Any]:
    """``POST /api/send`` as the console's chat does."""
    body = {"text": text, "conversation": conversation, "agent": agent, "key": key}
    request = urllib.request.Request(
        where[0] + "/api/send",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {where[1]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def asks(bridge: Bridge) -> list[Ask]:
    async def read() -> list[Ask]:
        ledger = await Ledger.open(bridge.config.ledger.path)
        try:
            return await ledger.list_asks()
        finally:
            await ledger.close()

    return asyncio.run(read())


def question(bridge: Bridge) -> OutboxItem:
    """The question's outbox row, once sent."""
    return wait_for(
        lambda: next(
            (
                r
                for r in replies(bridge)
                if r.idem_key.endswith(":question") and r.state == OutboxState.SENT
            ),
            None,
        ),
        what="the question sent",
    )


def busy_bridge(tmp_path: Path, project: Path, **start: Any) -> tuple[Bridge, tuple[str, str], int]:
    """A bridge whose agent works on a slow message from console conversation ``alice``."""
    bridge = Bridge(tmp_path, console=True, **bridge_kwargs(project))
    bridge.start(**start)
    where = console(bridge)
    sent = post(where, "alice", "#fake:slow=40 a long job", "job-1")
    message = int(sent["message"]["id"])
    wait_for(
        lambda: bridge.status()["agents"]["demo"]["in_flight_message"] == message,
        what="message in flight",
    )
    return bridge, where, message


def test_the_next_message_of_that_conversation_is_the_answer(tmp_path: Path) -> None:
    project = tmp_path / "project"
    bridge, where, message = busy_bridge(tmp_path, project)
    try:
        call = AskCall(bridge, project, question="Which database?", choices=["postgres", "sqlite"])
        item = question(bridge)
        assert (item.channel, item.conversation, item.message_id) == ("web", "alice", message)
        [ask] = asks(bridge)
        assert f"(ask {ask.short_id}): Which database?" in item.text
        assert [(a.label, a.answer) for a in reply_actions(item)] == [
            ("postgres", f"answer {ask.short_id} postgres"),
            ("sqlite", f"answer {ask.short_id} sqlite"),
        ]
        other = post(where, "bob", "hello from bob", "bob-1")  # another conversation
        assert other["created"] is True and other["message"]["text"] == "hello from bob"
        status = post(where, "alice", "/status", "alice-status")  # a command is not an answer
        assert status["created"] is True and status["message"]["agent"] != "demo"
        assert asks(bridge)[0].state == AskState.PENDING
        answered = post(where, "alice", "2", "alice-2")
        assert answered["created"] is False and answered["message"]["id"] == message
        assert call.outcome() == (False, "answer from web: sqlite")
        [ask] = asks(bridge)
        assert (ask.state, ask.answer, ask.answer_key) == (AskState.ANSWERED, "sqlite", "alice-2")
        kinds = [e["kind"] for e in bridge.events(message)]
        assert "ask" in kinds and "ask_answered" in kinds
        assert all(m.text != "2" for m in bridge.messages())  # never queued to the agent
        again = post(where, "alice", "2", "alice-2")  # the platform redelivers the answer
        assert again["created"] is False
        assert [m.text for m in bridge.messages()].count("2") == 0
        bob = bridge.wait_state(int(other["message"]["id"]), "completed", timeout=90)
        assert bob.reply == "echo: hello from bob"
    finally:
        bridge.stop()


def test_no_answer_in_time_is_a_clear_result(tmp_path: Path) -> None:
    project = tmp_path / "project"
    bridge = Bridge(tmp_path, **bridge_kwargs(project)).start()
    try:
        call = AskCall(bridge, project, question="Deploy now?", timeout_s=1.5)
        failed, text = call.outcome()
        [ask] = asks(bridge)
        assert not failed
        assert text == f"no answer within 1.5 s (ask {ask.short_id}): decide without it"
        assert (ask.state, ask.channel, ask.conversation) == (AskState.EXPIRED, "local", "ops")
        notes = wait_for(
            lambda: [r.text for r in replies(bridge) if r.idem_key == f"ask:{ask.id}:timeout"],
            what="the timeout note",
        )
        assert notes == [f"Question {ask.short_id} not answered within 1.5 s: the agent goes on"
                         " without it"]  # fmt: skip
    finally:
        bridge.stop()


def test_an_answer_taken_before_a_crash_reaches_the_tool_after_the_restart(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    bridge, where, message = busy_bridge(tmp_path, project, crash_at="after_ask_answer")
    try:
        call = AskCall(bridge, project, question="Which database?", timeout_s=120)
        question(bridge)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(where, "alice", "postgres", "alice-1")  # committed, then SIGKILL
        assert bridge.proc is not None and bridge.proc.wait(20) != 0
        [ask] = asks(bridge)
        assert (ask.state, ask.answer) == (AskState.ANSWERED, "postgres")
        bridge.start()
        assert call.outcome() == (False, "answer from web: postgres")
        assert all(m.text != "postgres" for m in bridge.messages())
        assert "ask_answered" in [e["kind"] for e in bridge.events(message)]
    finally:
        bridge.stop()


def test_agentbridge_send_answers_an_ask_of_the_local_channel(tmp_path: Path) -> None:
    project = tmp_path / "project"
    bridge = Bridge(tmp_path, **bridge_kwargs(project)).start()
    try:
        call = AskCall(bridge, project, question="Deploy now?", choices=["yes", "no"])
        item = question(bridge)
        assert (item.channel, item.conversation, item.message_id) == ("local", "ops", None)
        status = bridge.cli("send", "--conversation", "ops", "/status").stdout
        assert asks(bridge)[0].state == AskState.PENDING, status  # a command is no answer
        printed = bridge.send("1", "--conversation", "ops")
        assert printed == 0  # no message row: the ask row is the record
        failed, text = call.outcome()
        assert not failed and text.startswith("answer from ") and text.endswith(": yes"), text
        assert all(m.text != "1" for m in bridge.messages())
    finally:
        bridge.stop()


def test_an_ask_whose_turn_ended_does_not_swallow_the_next_message(tmp_path: Path) -> None:
    project = tmp_path / "project"
    bridge = Bridge(tmp_path, console=True, **bridge_kwargs(project)).start()
    try:
        where = console(bridge)
        message = int(post(where, "alice", "#fake:slow=8 short job", "job-1")["message"]["id"])
        wait_for(
            lambda: bridge.status()["agents"]["demo"]["in_flight_message"] == message,
            what="message in flight",
        )
        call = AskCall(bridge, project, question="Still there?", timeout_s=120)
        assert question(bridge).message_id == message
        bridge.wait_state(message, "completed", timeout=60)  # the turn ended unanswered
        later = post(where, "alice", "a new request", "alice-2")
        assert later["created"] is True and later["message"]["text"] == "a new request"
        [ask] = asks(bridge)
        assert (ask.state, ask.answered_by) == (AskState.EXPIRED, "turn-ended")
        failed, text = call.outcome()
        assert (
            not failed and text == f"ask {ask.short_id} closed: the turn it was asked in has ended"
        )
        done = bridge.wait_state(int(later["message"]["id"]), "completed", timeout=60)
        assert done.reply == "echo: a new request"
    finally:
        bridge.stop()
