"""Permission relay with the real CLIs: a tool call that needs permission, answered from the chat.

The mock model answers ``#mock:tool=<cmd>`` with a shell tool call (Claude ``Bash``, Codex
``exec_command`` asking to leave the sandbox). With permissions on (Claude's default mode;
Codex ``approval_policy = "on-request"``) the CLI runs our blocking ``PermissionRequest`` hook;
the bridge opens a ``permission_request`` and queues ``Permission needed: …`` to the
conversation over the HTTP channel; ``yes <id>`` from that conversation lets the command run
(a file appears), a second answer is told who won, and ``show`` has the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agentbridge.ledger.store import open_ledger
from agentbridge.testing import wait_until
from agentbridge.testing.mock_model import MockModelServer
from agentbridge.testing.realcli import CODEX_CONFIG
from bridge_harness import Bridge

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread

pytestmark = pytest.mark.realcli
__all__ = ["mock_in_thread"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, token: str, text: str) -> dict[str, Any]:
    body = json.dumps({"text": text, "conversation": "phone"}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/messages",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def _outbox(bridge: Bridge) -> list[str]:
    async def read() -> list[str]:
        ledger = await open_ledger(bridge.config.ledger.path)
        try:
            return [r.text for r in await ledger.list_replies(limit=1000)]
        finally:
            await ledger.close()

    return asyncio.run(read())


def _agent(agent_clis: AgentClis, which: str, mock: MockModelServer, root: Path) -> dict[str, Any]:
    home = root / "agent-home"
    proxy = {"HTTPS_PROXY": mock.base_url, "HTTP_PROXY": mock.base_url, "NO_PROXY": "127.0.0.1"}
    if which == "claude":
        return {
            "runtime": "claude-code",
            "command": [str(agent_clis.claude)],
            "cwd": str(root / "work"),
            "launch_grace": 60,
            "resume": False,
            "env": {
                "HOME": str(home),
                "ANTHROPIC_BASE_URL": mock.base_url,
                "ANTHROPIC_AUTH_TOKEN": "sk-test",
                **proxy,
            },
        }
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    config = CODEX_CONFIG.format(base=mock.base_url)
    config = config.replace('approval_policy = "never"', 'approval_policy = "on-request"')
    config = config.replace('sandbox_mode = "danger-full-access"', 'sandbox_mode = "read-only"')
    (codex_home / "config.toml").write_text(config)
    return {
        "runtime": "codex",
        "command": [str(agent_clis.codex)],
        "cwd": str(root / "work"),
        "launch_grace": 60,
        "resume": False,
        "env": {
            "HOME": str(home),
            "CODEX_HOME": str(codex_home),
            "MOCK_API_KEY": "sk-test",
            **proxy,
        },
    }


@pytest.mark.parametrize("which", ["claude", "codex"])
def test_permission_prompt_answered_from_the_chat(
    which: str, agent_clis: AgentClis, mock_in_thread: MockModelServer, tmp_path: Path
) -> None:
    port = _free_port()
    agents = {which: _agent(agent_clis, which, mock_in_thread, tmp_path)}
    bridge = Bridge(
        tmp_path / "bridge", agents=agents, extra={"channels": {"http": {"port": port}}}
    )
    try:
        bridge.start()
        token = (bridge.state_dir / "channels" / "http" / "http-api.token").read_text().strip()
        done = tmp_path / "work" / "perm-ok.txt"
        sent = _post(port, token, f"please #mock:tool=touch {done}")
        mid = int(sent["id"])

        def asked() -> str | None:
            for text in _outbox(bridge):
                if text.startswith("Permission needed: "):
                    return text
            return None

        notice = wait_until(asked, timeout=60, interval=0.2, what="the permission notice")
        found = re.search(r'"yes ([a-z0-9]{5})"', notice)
        assert found is not None, notice
        short = found.group(1)
        assert "touch" in notice and str(done) in notice
        assert ("always" in notice) == (which == "claude")  # Codex's hook has no session rules
        assert not done.exists()  # it waits for the answer
        answered = _post(port, token, f"yes {short}")
        assert int(answered["id"]) == mid  # the answer is not a new message for the agent
        msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=90)
        assert msg.state == "completed", (msg.state, msg.reason)
        assert done.exists()  # the tool ran: the chat's "yes" reached the CLI
        _post(port, token, f"no {short}")
        wait_until(
            lambda: any(f"{short} already answered by http" in t for t in _outbox(bridge)),
            timeout=15,
            interval=0.2,
            what="the second answer is told who won",
        )
        shown = bridge.cli("show", str(mid)).stdout
        assert f"{short}: allowed" in shown and "permission_asked" in shown
        assert all(m.id == mid for m in bridge.messages())  # answers never became messages
    finally:
        bridge.stop()
