"""The permission relay without a CLI: the real hook program (a subprocess) against a real
control socket and a real ledger — timeout, no supervisor, answers from the wrong place."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentbridge.agent.socket_pointer import write_pointer
from agentbridge.config import parse_config
from agentbridge.delivery.actions import reply_actions
from agentbridge.ledger.store import LedgerStore, PermissionState, open_ledger
from agentbridge.models import Message
from agentbridge.supervisor.control import ControlServer
from agentbridge.supervisor.permissions import PermissionRelay, summarize

PAYLOAD = {
    "hook_event_name": "PermissionRequest",
    "tool_name": "Bash",
    "tool_input": {"command": "rm -rf build\u202e \x1b[31m"},
    "permission_suggestions": [{"type": "addRules", "destination": "localSettings"}],
}


@dataclass
class Rig:
    ledger: LedgerStore
    relay: PermissionRelay
    agent_state: Path
    message: Message


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = parse_config(
        {
            "state_dir": str(tmp_path / "s"),
            "ledger": {"path": str(tmp_path / "s" / "ledger.db")},
            "agents": {"a": {"runtime": "demo"}},
            "permissions": {"timeout": 1.5},
        }
    )
    ledger = await open_ledger(config.ledger.path)
    relay = PermissionRelay(ledger, config)
    server = ControlServer(tmp_path / "c.sock", {"permission": relay.handle})
    await server.start()
    write_pointer(config.state_dir, tmp_path / "c.sock")
    msg = (await ledger.ingest("http", "phone", "alice", "go", agent="a")).message
    claimed = await ledger.claim_next("a", "owner", 60)
    assert claimed is not None
    agent_state = config.state_dir / "agents" / "a"
    agent_state.mkdir(parents=True)
    try:
        yield Rig(ledger, relay, agent_state, msg)
    finally:
        await server.stop()
        await ledger.close()


async def run_hook(agent_state: Path) -> tuple[int, str, float]:
    """The hook exactly as a CLI runs it: payload on stdin, decision on stdout."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentbridge.agent.permission_hook",
        str(agent_state),
        "a",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(json.dumps(PAYLOAD).encode()), 30)
    return proc.returncode or 0, out.decode(), time.monotonic() - started


async def notices(ledger: LedgerStore) -> list[str]:
    return [r.text for r in await ledger.list_replies()]


async def test_unanswered_request_is_denied_at_the_timeout_and_said_so(rig: Rig) -> None:
    code, out, took = await run_hook(rig.agent_state)
    assert code == 0 and 1.4 < took < 10
    decision = json.loads(out)["hookSpecificOutput"]["decision"]
    assert decision == {"behavior": "deny", "message": "timed out in the chat"}
    (req,) = await rig.ledger.list_permissions()
    assert req.state == PermissionState.EXPIRED and req.answered_by == "timeout"
    texts = await notices(rig.ledger)
    assert texts[0].startswith("Permission needed: Bash rm -rf build")
    assert "\u202e" not in texts[0] and "\x1b" not in texts[0]  # sanitized for the chat
    assert f'"always {req.short_id}"' in texts[0]  # Claude offered session rules
    assert texts[1] == f"Permission {req.short_id} (Bash) not answered within 1.5 s: denied"
    # the question carries its buttons; the timeout notice carries none
    ask, notice = await rig.ledger.list_replies()
    assert [(a.label, a.answer) for a in reply_actions(ask)] == [
        ("Allow", f"yes {req.short_id}"),
        ("Allow for this session", f"always {req.short_id}"),
        ("Deny", f"no {req.short_id}"),
    ]
    assert reply_actions(notice) == ()


async def test_answer_from_the_conversation_allows_for_the_session(rig: Rig) -> None:
    hook = asyncio.create_task(run_hook(rig.agent_state))
    while not await rig.ledger.list_permissions(state=PermissionState.PENDING):
        await asyncio.sleep(0.02)
    (req,) = await rig.ledger.list_permissions()
    # another conversation (or channel) cannot answer: the text is left for its own agent
    assert await rig.relay.intercept("http", "other", "mallory", f"yes {req.short_id}") is None
    assert await rig.relay.intercept("web", "phone", "mallory", f"yes {req.short_id}") is None
    assert await rig.relay.intercept("http", "phone", "alice", "yes please") is None
    taken = await rig.relay.intercept("http", "phone", "alice", f"  ALWAYS {req.short_id.upper()} ")
    assert taken is not None and taken.message.id == rig.message.id and not taken.created
    code, out, _ = await hook
    assert code == 0
    decision = json.loads(out)["hookSpecificOutput"]["decision"]
    assert decision == {
        "behavior": "allow",
        "updatedPermissions": [{"type": "addRules", "destination": "session"}],
    }
    again = await rig.relay.intercept("http", "phone", "bob", f"no {req.short_id}")
    assert again is not None
    texts = await notices(rig.ledger)
    assert f"Permission {req.short_id}: allowed for this session (by alice)" in texts
    assert f"Permission {req.short_id} already answered by alice (allowed)" in texts
    (row,) = await rig.ledger.list_permissions()
    assert row.state == PermissionState.ALLOWED and row.always and row.answered_by == "alice"


async def test_no_supervisor_leaves_the_cli_prompt(tmp_path: Path) -> None:
    agent_state = tmp_path / "s" / "agents" / "a"
    agent_state.mkdir(parents=True)
    code, out, took = await run_hook(agent_state)
    assert (code, out) == (0, "") and took < 5
    log = (agent_state / "permission-hook.log").read_text()
    assert "the CLI's own prompt stays" in log


def test_summaries_are_short_single_lines() -> None:
    assert summarize("Edit", {"file_path": "/a/b.py", "old_string": "x"}) == "/a/b.py"
    long = summarize("Bash", {"command": "echo " + "y\n" * 400})
    assert len(long) == 160 and long.endswith("…") and "\n" not in long
    assert summarize("exec", {"cmd": ["git", "push"]}) == "git push"
