"""Files sent with a message reach the real Claude Code and Codex, read without a prompt.

A file uploaded with a console message is stored under the agent's cwd
(``.agentbridge/inbox/<message id>/<name>``) and the pasted text names it. The mock model
reads the file it names (Claude ``Read``, Codex ``sed``, see ``mock_read.py``), so the file's
unique content can only appear in a model request if the real CLI opened the file itself —
with no permission prompt (the agent stays healthy, the turn completes, no permission request
is opened). One file goes with a caption, one without: a file alone is a message too.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentbridge.ledger.store import open_ledger
from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import Bridge, wait_for

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread  # noqa: F401  (a fixture)
from .test_long_messages import _agents, delivered

pytestmark = pytest.mark.realcli


async def _send_with_file(
    console: str, token: str, agent: str, text: str, name: str, content: bytes
) -> int:
    form = aiohttp.FormData()
    form.add_field("text", text)
    form.add_field("agent", agent)
    form.add_field("key", f"attach-{agent}")
    form.add_field("file", content, filename=name, content_type="text/plain")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{console}/api/send", data=form) as r,
    ):
        assert r.status == 200, await r.text()
        return int((await r.json())["message"]["id"])


def _permissions(bridge: Bridge) -> list[Any]:
    async def read() -> list[Any]:
        ledger = await open_ledger(bridge.config.ledger.path)
        try:
            return list(await ledger.list_permissions())
        finally:
            await ledger.close()

    return asyncio.run(read())


def test_attached_files_are_read_by_the_real_clis_without_a_prompt(
    agent_clis: AgentClis,
    mock_in_thread: MockModelServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    mock = mock_in_thread
    agents = _agents(agent_clis, mock, tmp_path)
    cwd = Path(agents["claude"]["cwd"]).resolve()
    bridge = Bridge(tmp_path / "bridge", agents=agents, console=True)
    try:
        bridge.start()
        console = wait_for(
            lambda: re.findall(
                r"agentbridge: web at (http://127\.0\.0\.1:\d+)", bridge.log_path.read_text()
            ),
            what="the console url",
        )[-1]
        token = (bridge.state_dir / "channels/web/console.token").read_text().strip()
        sent = []
        for agent, caption in (("claude", "what does the attached file say?"), ("codex", "")):
            body = f"notes for {agent}\nATTACHED-{uuid.uuid4().hex}"
            mid = asyncio.run(
                _send_with_file(console, token, agent, caption, "../notes.txt", body.encode())
            )
            sent.append((agent, mid, body))
        for agent, mid, body in sent:
            msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=120)
            assert msg.state == "completed", (agent, msg.state, msg.reason, bridge.log_tail())
            assert (cwd / f".agentbridge/inbox/{mid}/notes.txt").read_text() == body
            assert delivered(mock, body) == "tool result", agent  # the CLI read the file
        assert _permissions(bridge) == []  # nothing asked to read it
        status = bridge.status()
        for agent in ("claude", "codex"):
            assert status["agents"][agent]["restarts"] == 0
            assert status["agents"][agent]["health"] == "healthy"
    finally:
        bridge.stop()
