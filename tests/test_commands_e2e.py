"""Chat commands end to end: a real ``agentbridge up`` (fake agents in real tmux), commands in
through ``agentbridge send`` and the HTTP API, answers out through the outbox.

Each command is stored like a message, handled by the core (never pasted into the pane), ends
``completed`` with its answer as the reply and a ``command`` audit event; ``/stop`` ends the
running turn ``interrupted``; an unknown ``/word`` gets help; a path-like text still reaches
the agent; ``/use`` survives a restart; a sender the channel does not allow is refused; a
bridge killed between storing a command and handling it handles it after the restart.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import Message, OutboxItem
from bridge_harness import Bridge, default_agents, running_bridge, wait_for
from test_faults import transcript_prompts
from test_routes_channels import call

pytestmark = pytest.mark.slow

_URL = re.compile(r"agentbridge: http at (http://127\.0\.0\.1:\d+)")


def replies(bridge: Bridge, message_id: int) -> list[OutboxItem]:
    """The outbox rows of one message, straight from the ledger file."""

    async def read() -> list[OutboxItem]:
        ledger = await Ledger.open(bridge.config.ledger.path)
        try:
            return await ledger.list_replies(message_id=message_id)
        finally:
            await ledger.close()

    return asyncio.run(read())


def answer(bridge: Bridge, message_id: int, timeout: float = 30) -> str:
    """Wait until the command is answered and its reply sent; the reply."""
    msg = bridge.wait_state(message_id, "completed", "failed", timeout=timeout)
    assert msg.state == "completed" and msg.reply, (msg, bridge.log_tail())
    wait_for(lambda: [r.state for r in replies(bridge, message_id)] == ["sent"], what="sent")
    assert replies(bridge, message_id)[0].text == msg.reply
    kinds = [e["kind"] for e in bridge.events(message_id)]
    assert "command" in kinds, kinds
    assert transcript_prompts(bridge, message_id) == []  # the agent never saw it
    return msg.reply


def test_commands_from_agentbridge_send(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        helped = answer(bridge, bridge.send("/frobnicate"))
        assert helped.startswith("unknown command /frobnicate") and "/stop" in helped
        assert "/retry ID" in answer(bridge, bridge.send("/help"))
        path_like = bridge.send("/usr/bin is broken")  # not a command: the agent gets it
        assert bridge.wait_state(path_like, "completed").reply == "echo: /usr/bin is broken"
        assert transcript_prompts(bridge, path_like) == [1]

        long = bridge.send("a long job #fake:slow=60")
        bridge.wait_state(long, "accepted")
        behind = bridge.send("queued behind it")
        status = answer(bridge, bridge.send("/status"))
        assert "agent demo (demo): healthy" in status, status
        assert f"in flight: message {long}, running" in status and "queue: 1 queued" in status

        assert answer(bridge, bridge.send(f"/cancel {behind}")) == f"message {behind} cancelled"
        dropped = bridge.message(behind)
        assert dropped.state == "failed" and "/cancel" in (dropped.reason or "")
        assert "is running: use /stop" in answer(bridge, bridge.send(f"/cancel {long}"))

        stopped_text = f"stopped: message {long} ended interrupted (it is not re-run)"
        stop = bridge.send("/stop")
        assert answer(bridge, stop) == stopped_text
        stopped = bridge.message(long)
        assert stopped.state == "interrupted" and stopped.attempt == 1
        assert "stop_requested" in [e["kind"] for e in bridge.events(long)]
        notes = [e["detail"] for e in bridge.events(stop) if e["kind"] == "command"]
        # (a lone Esc read as the start of an escape sequence is pressed again: 1 to 3 presses)
        assert len(notes) == 1 and re.fullmatch(
            f"/stop: message {long} interrupted after [123] Esc", notes[0]
        ), notes
        assert answer(bridge, bridge.send("/stop")) == "agent demo: nothing is running"

        # /retry: an interrupted message is queued again (and stopped again here); a failed
        # one is sent again as a new message
        assert answer(bridge, bridge.send(f"/retry {long}")) == f"message {long} is queued again"
        bridge.wait_state(long, "accepted")
        assert "ended interrupted" in answer(bridge, bridge.send("/stop"))
        again = answer(bridge, bridge.send(f"/retry {behind}"))
        new_id = int(again.rsplit(" ", 1)[1])
        assert bridge.wait_state(new_id, "completed").reply == "echo: queued behind it"
        assert bridge.message(new_id).meta["retry_of"] == behind
        missing = answer(bridge, bridge.send("/retry 99999"))
        assert missing == "no message 99999 in this conversation"
        # another conversation's message is out of reach
        other = answer(bridge, bridge.send(f"/cancel {new_id}", "--conversation", "elsewhere"))
        assert other == f"no message {new_id} in this conversation"
        assert transcript_prompts(bridge, long) == [1, 1]  # run by the retry, never replayed


def test_new_asks_then_restarts_after_the_turn_in_flight(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        assert "send /new first" in answer(bridge, bridge.send("/new confirm"))
        before = bridge.status()["agents"]["demo"]
        running = bridge.send("a short job #fake:slow=3")
        bridge.wait_state(running, "accepted")
        assert "send /new confirm within 60 s" in answer(bridge, bridge.send("/new"))
        # another sender cannot confirm someone else's /new
        foreign = bridge.send("/new confirm", "--sender", "someone-else")
        assert "send /new first" in answer(bridge, foreign)
        confirmed = answer(bridge, bridge.send("/new confirm"))
        assert f"once message {running} has finished" in confirmed, confirmed
        done = bridge.wait_state(running, "completed", timeout=30)  # not cut off, not replayed
        assert done.attempt == 1 and done.reply == "echo: a short job #fake:slow=3"
        wait_for(
            lambda: bridge.status()["agents"]["demo"]["restarts"] == before["restarts"] + 1,
            what="the fresh session",
        )
        bridge.wait_health("healthy")
        assert bridge.pane_pid() != before["pid"]
        after = bridge.send("in the fresh session")
        assert bridge.wait_state(after, "completed").reply == "echo: in the fresh session"
        assert "send /new first" in answer(bridge, bridge.send("/new confirm"))  # used up


def _http_bridge(tmp_path: Path) -> tuple[Bridge, str]:
    token = tmp_path / "http.token"
    token.write_text("commands-e2e-token-0123456789abcdef\n")
    token.chmod(0o600)
    http = {"port": 0, "tokens": [{"token_file": str(token), "senders": ["alice"]}]}
    routes = [
        {"channel": "http", "agent": "main"},
        {"channel": "http", "agent": "reviewer"},  # reachable by @mention or /use
        {"agent": "main"},
    ]
    agents = {name: default_agents()["demo"] for name in ("main", "reviewer")}
    extra = {"routes": routes, "channels": {"http": http}}
    bridge = Bridge(tmp_path, agents=agents, extra=extra, console=True)
    return bridge, token.read_text().strip()


def _api(bridge: Bridge, log_from: int) -> str:
    found = wait_for(
        lambda: _URL.findall(bridge.log_path.read_text()[log_from:]), what="the http url"
    )
    return str(found[-1]) + "/v1/messages"


def test_commands_over_http_with_use_surviving_a_restart(tmp_path: Path) -> None:
    bridge, token = _http_bridge(tmp_path)
    try:
        bridge.start()
        api = _api(bridge, 0)

        def post(text: str, sender: str = "alice") -> tuple[int, dict[str, Any]]:
            return call("POST", api, token, {"text": text, "sender": sender})

        def reply_of(text: str) -> tuple[int, str]:
            status, body = post(text)
            assert status == 202, body
            mid = int(body["id"])
            got = call("GET", f"{api}/{mid}?wait=30", token)[1]
            assert got["state"] == "completed", got
            return mid, answer(bridge, mid)

        refused, body = post("/stop", sender="mallory")  # the channel's sender allowlist
        assert refused == 403, body
        assert all(m.sender != "mallory" for m in bridge.messages())

        _, status = reply_of("/status")
        assert status.startswith("agent main (demo): healthy"), status
        _, listed = reply_of("/agents")
        assert "* main: healthy" in listed and "  reviewer: healthy" in listed, listed
        assert "no agent 'ops' here" in reply_of("/use ops")[1]
        assert reply_of("/use reviewer")[1] == "this conversation now talks to reviewer"
        _, listed = reply_of("/agents")
        assert "* reviewer: healthy (chosen with /use)" in listed, listed

        status_code, body = post("a long one #fake:slow=60")
        long = int(body["id"])
        bridge.wait_state(long, "accepted")
        assert bridge.message(long).agent == "reviewer"
        _, stopped = reply_of("/stop")
        assert stopped == f"stopped: message {long} ended interrupted (it is not re-run)"
        assert bridge.message(long).state == "interrupted"

        # the console's chat with one agent: the command is about that agent
        console = wait_for(
            lambda: re.findall(
                r"agentbridge: web at (http://127\.0\.0\.1:\d+)", bridge.log_path.read_text()
            ),
            what="the console url",
        )[-1]
        console_token = (bridge.state_dir / "channels/web/console.token").read_text().strip()
        body = {"text": "/status", "agent": "main", "conversation": "c", "key": "console-status"}
        code, sent = call("POST", console + "/api/send", console_token, body)
        assert code == 200, sent
        assert answer(bridge, int(sent["message"]["id"])).startswith("agent main (demo): ")

        bridge.stop()  # the choice is durable
        size = bridge.log_path.stat().st_size
        bridge.start()
        api = _api(bridge, size)
        status_code, body = post("after the restart")
        assert status_code == 202
        mine = bridge.wait_state(int(body["id"]), "completed")
        assert (mine.agent, mine.reply) == ("reviewer", "echo: after the restart")
        cli = bridge.send("via the cli", "--channel", "http", "--conversation", "default")
        assert bridge.message(cli).agent == "reviewer"  # agentbridge send reads the choice too
        mention = bridge.send("@main mentioned", "--channel", "http", "--conversation", "default")
        assert bridge.message(mention).agent == "main"  # a mention still wins
        assert "messages go to main" in reply_of("/use reset")[1]
        status_code, body = post("after the reset")
        assert bridge.wait_state(int(body["id"]), "completed").agent == "main"
    finally:
        bridge.stop()


def test_a_command_stored_before_a_crash_is_handled_after_the_restart(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path)
    try:
        bridge.start(crash_at="before_command")
        mid = bridge.send("/status")
        assert bridge.proc is not None
        wait_for(lambda: bridge.proc is not None and bridge.proc.poll() is not None, what="crash")
        msg: Message = bridge.message(mid)
        assert msg.state == "claimed" and msg.agent == "@commands"
        bridge.start()
        assert answer(bridge, mid).startswith("agent demo (demo): ")  # at once, maybe "starting"
        assert bridge.message(mid).attempt == 2  # requeued from the dead bridge, handled once
        assert [e["kind"] for e in bridge.events(mid)].count("command") == 1
    finally:
        bridge.stop()
