"""The permission relay end to end: a real ``agentbridge up``, the fake agent in real tmux
running the real ``PermissionRequest`` hook program (``#fake:tool``), the question in the
outbox of the asking conversation, answers written with ``agentbridge send`` — through the
control socket, and with no supervisor running — and the request in ``show``/``show --json``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest

from agentbridge.delivery.actions import reply_actions
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import OutboxItem
from bridge_harness import Bridge, running_bridge, wait_for
from test_routes_channels import call

pytestmark = pytest.mark.slow

SUMMARY = "touch fake-tool-output.txt"  # the fake tool call (fakeagent/permission.py)


def replies(bridge: Bridge, message_id: int) -> list[OutboxItem]:
    async def read() -> list[OutboxItem]:
        ledger = await Ledger.open(bridge.config.ledger.path)
        try:
            return await ledger.list_replies(message_id=message_id)
        finally:
            await ledger.close()

    return asyncio.run(read())


def question(bridge: Bridge, message_id: int) -> tuple[OutboxItem, str]:
    """Wait until the permission question of the message was delivered; it and its short id."""

    def sent() -> OutboxItem | None:
        asks = [r for r in replies(bridge, message_id) if r.idem_key.endswith(":ask")]
        return asks[0] if asks and asks[0].state == "sent" else None

    ask: OutboxItem = wait_for(sent, timeout=30, what="the permission question delivered")
    actions = reply_actions(ask)
    short_id = actions[0].answer.split()[1]
    return ask, short_id


def send(bridge: Bridge, text: str, sender: str = "alice") -> tuple[int, str, str]:
    done = bridge.cli("send", "--sender", sender, "-", input=text, check=False)
    return done.returncode, done.stdout.strip(), done.stderr.strip()


def test_answer_sent_through_the_socket_allows_and_shows(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        mid = bridge.send("make the file #fake:tool", "--sender", "alice")
        ask, short_id = question(bridge, mid)
        assert ask.text.startswith(f"Permission needed: Bash {SUMMARY} — reply ")
        assert [a.label for a in reply_actions(ask)] == ["Allow", "Allow for this session", "Deny"]
        assert bridge.message(mid).state in ("submitted", "accepted")
        count = len(bridge.messages())
        code, out, err = send(bridge, f"yes {short_id}")
        assert (code, out) == (0, str(mid)), err
        assert f"permission {short_id}: allowed (by alice)" in err
        assert len(bridge.messages()) == count  # taken by the relay, never stored
        done = bridge.wait_state(mid, "completed", timeout=30)
        assert done.reply is not None and done.reply.startswith("tool Bash: allowed\n")
        # a second answer is told who was first, and changes nothing
        code, out, err = send(bridge, f"no {short_id}", sender="bob")
        assert code == 0 and f"permission {short_id} already answered by alice (allowed)" in err
        texts = [r.text for r in replies(bridge, mid)]
        assert f"Permission {short_id}: allowed (by alice)" in texts
        assert f"Permission {short_id} already answered by alice (allowed)" in texts
        shown = json.loads(bridge.cli("show", str(mid), "--json").stdout)
        (perm,) = shown["permissions"]
        assert (perm["short_id"], perm["tool"], perm["summary"]) == (short_id, "Bash", SUMMARY)
        assert (perm["state"], perm["answered_by"], perm["always"]) == ("allowed", "alice", False)
        assert "permission_asked" in [e["kind"] for e in shown["events"]]
        text = bridge.cli("show", str(mid)).stdout
        assert f"permission {short_id}: Bash {SUMMARY} — allowed by alice" in text
    # no supervisor now: an answer to an answered request is refused with a clear line
    code, out, err = send(bridge, f"yes {short_id}")
    assert code != 0 and out == ""
    assert f"permission {short_id} was already answered by alice (allowed)" in err
    assert len(bridge.messages()) == count


def test_deny_ends_the_turn_without_the_tool_and_always_is_remembered(tmp_path: Path) -> None:
    with running_bridge(tmp_path) as bridge:
        mid = bridge.send("first #fake:tool", "--sender", "alice")
        _, short_id = question(bridge, mid)
        code, _, err = send(bridge, f"no {short_id}")
        assert code == 0 and f"permission {short_id}: denied (by alice)" in err
        done = bridge.wait_state(mid, "completed", timeout=30)
        assert done.reply is not None
        assert done.reply.startswith("tool Bash: denied (denied from the chat)\n")
        mid = bridge.send("second #fake:tool", "--sender", "alice")
        _, short_id = question(bridge, mid)
        code, _, err = send(bridge, f"always {short_id}")
        assert f"permission {short_id}: allowed for this session (by alice)" in err
        done = bridge.wait_state(mid, "completed", timeout=30)
        assert done.reply is not None
        assert done.reply.startswith("tool Bash: allowed for this session\n")
        # the session rule answers the next call in the CLI itself: no question
        mid = bridge.send("third #fake:tool", "--sender", "alice")
        done = bridge.wait_state(mid, "completed", timeout=30)
        assert done.reply is not None and "(session rule)" in done.reply
        assert [r for r in replies(bridge, mid) if r.idem_key.endswith(":ask")] == []


def test_answer_with_no_supervisor_is_refused_not_stored(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path)
    try:
        bridge.start()
        mid = bridge.send("wait for me #fake:tool", "--sender", "alice")
        _, short_id = question(bridge, mid)
    finally:
        bridge.stop()
    count = len(bridge.messages())
    code, out, err = send(bridge, f"yes {short_id}")
    assert code != 0 and out == ""
    assert f"no supervisor is running, so nothing waits for permission {short_id}" in err
    assert len(bridge.messages()) == count
    # a text that answers no request of this conversation is still a plain message
    code, out, _ = send(bridge, "yes zzzzz")
    assert code == 0 and int(out) > mid


def test_console_lists_and_answers_through_the_bridge_relay(tmp_path: Path) -> None:
    with running_bridge(tmp_path, console=True) as bridge:
        console = wait_for(
            lambda: re.findall(
                r"agentbridge: web at (http://127\.0\.0\.1:\d+)", bridge.log_path.read_text()
            ),
            what="the console url",
        )[-1]
        token = (bridge.state_dir / "channels/web/console.token").read_text().strip()
        mid = bridge.send("make the file #fake:tool", "--sender", "alice")
        _, short_id = question(bridge, mid)
        code, status = call("GET", console + "/api/status", token)
        assert code == 200 and status["can_answer_permissions"] is True
        (shown,) = status["permissions"]
        assert (shown["short_id"], shown["summary"], shown["message_id"]) == (
            short_id,
            SUMMARY,
            mid,
        )
        code, body = call("POST", f"{console}/api/permissions/{short_id}", token, {"answer": "yes"})
        assert code == 200 and body["permission"]["answered_by"] == "console", body
        done = bridge.wait_state(mid, "completed", timeout=30)
        assert done.reply is not None and done.reply.startswith("tool Bash: allowed\n")
        code, body = call("POST", f"{console}/api/permissions/{short_id}", token, {"answer": "no"})
        assert (code, body["error"]) == (409, "already answered by console (allowed)")


def test_relay_off_leaves_the_dialog_to_the_pane(tmp_path: Path) -> None:
    """No decision from the hook: the CLI's own dialog stays, and a key there decides."""
    with running_bridge(tmp_path, extra={"permissions": {"enabled": False}}) as bridge:
        mid = bridge.send("make the file #fake:tool", "--sender", "alice")
        wait_for(lambda: "Do you want to proceed?" in bridge.capture(), timeout=30, what="dialog")
        hook_log = bridge.state_dir / "agents" / "demo" / "permission-hook.log"
        wait_for(
            lambda: hook_log.exists() and "permission relay disabled" in hook_log.read_text(),
            what="the hook gave no decision",
        )
        asks = [r for r in replies(bridge, mid) if r.idem_key.startswith("permission:")]
        assert asks == []
        keys = ["tmux", "-L", bridge.socket, "send-keys", "-t", "ab-demo", "1"]
        subprocess.run(keys, check=True)
        done = bridge.wait_state(mid, "completed", timeout=30)
        assert done.reply == "echo: make the file #fake:tool"  # no tool note: the pane decided
