"""The whole bridge with the real Claude Code and Codex CLIs: `agentbridge up`, two agents.

Both CLIs answer through the mock model on 127.0.0.1 (also their only proxy). 24 messages go to
each agent through the local channel — short, multi-line, unicode, 3 KB, 10 KB (pasted whole:
far under both CLIs' measured paste limits) — and every one must reach ``completed`` with
exactly the mock's answer to that prompt captured as its reply (Claude's: also in its own
async ``Stop`` hook record, the turns back to back). Long messages
(12 kB, 100 kB, pasted and through the inbox file): ``test_long_messages.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.events import AgentEventKind
from agentbridge.runtimes.claude.transcript import ClaudeHookParser, ClaudeTranscriptParser
from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import Bridge

from .conftest import AgentClis
from .test_real_clis import BODIES, CODEX_CONFIG

pytestmark = pytest.mark.realcli


@pytest.fixture
def mock_in_thread() -> Iterator[MockModelServer]:
    """The mock model served from its own event loop thread (the test itself is sync)."""
    loop = asyncio.new_event_loop()
    server = MockModelServer()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.__aenter__())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_bridge_drives_real_claude_and_codex(
    agent_clis: AgentClis, mock_in_thread: MockModelServer, tmp_path: Path
) -> None:
    mock = mock_in_thread
    home = tmp_path / "agent-home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=mock.base_url))
    proxy = {
        "HTTPS_PROXY": mock.base_url,
        "HTTP_PROXY": mock.base_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    agents = {
        "claude": {
            "runtime": "claude-code",
            "command": [str(agent_clis.claude)],
            "cwd": str(tmp_path / "work"),
            "launch_grace": 60,
            "resume": False,
            "env": {
                "HOME": str(home),
                "ANTHROPIC_BASE_URL": mock.base_url,
                "ANTHROPIC_AUTH_TOKEN": "sk-test",
                **proxy,
            },
        },
        "codex": {
            "runtime": "codex",
            "command": [str(agent_clis.codex)],
            "cwd": str(tmp_path / "work"),
            "launch_grace": 60,
            "resume": False,
            "env": {
                "HOME": str(home),
                "CODEX_HOME": str(codex_home),
                "MOCK_API_KEY": "sk-test",
                **proxy,
            },
        },
    }
    bridge = Bridge(tmp_path / "bridge", agents=agents)
    try:
        bridge.start()
        sent: list[tuple[str, int]] = []
        for body in BODIES:
            for agent in ("claude", "codex"):
                mid = bridge.send(body, "--agent", agent, "--conversation", f"{agent}-conv")
                sent.append((agent, mid))
        assert len(sent) >= 40
        for agent, mid in sent:
            msg = bridge.wait_state(mid, "completed", "failed", "quarantined", timeout=120)
            assert msg.state == "completed", (agent, mid, msg.state, msg.reason)
            asked = [
                r
                for r in mock.requests
                if r.answer and r.user_text.startswith(f"[agentbridge message={mid} ")
            ]
            assert asked, f"the model never saw message {mid} ({agent})"
            assert msg.reply == asked[-1].answer, (agent, mid, msg.reply)
            assert msg.attempt == 1
        # Claude's relay hooks run async and the messages went in back to back (turns and
        # relays overlap): each message still has its own whole Stop record, which names its
        # prompt by id only; the transcript's prompt lines say which envelope that is.
        hooks = ClaudeHookParser()
        for path in (home / ".claude" / "projects").glob("*/*.jsonl"):
            transcript = ClaudeTranscriptParser()
            for line in path.read_text().splitlines():
                for event in transcript.feed(line):
                    hooks.learn(event)
        hook_log = bridge.state_dir / "agents" / "claude" / "hooks.jsonl"
        seen = [e for line in hook_log.read_text().splitlines() for e in hooks.feed_line(line)]
        assert hooks.corrupt_lines == 0
        for agent, mid in sent:
            if agent == "claude":
                mine = [e for e in seen if e.envelope is not None and e.envelope.message_id == mid]
                stops = [e.text for e in mine if e.kind == AgentEventKind.TURN_COMPLETED]
                assert stops == [bridge.message(mid).reply], (mid, stops)
        status = bridge.status()
        for agent in ("claude", "codex"):
            assert status["agents"][agent]["restarts"] == 0
            assert status["agents"][agent]["corrupt_lines"] == 0
    finally:
        bridge.stop()
