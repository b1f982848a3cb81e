"""Fixtures for the real-CLI tests: the pinned CLIs from npm, the mock model, a private tmux.

The CLIs are installed by ``scripts/install-agent-clis`` into a cache outside the repo (fast
when already there). The tests skip — loudly — only when npm itself is unreachable (exit 3);
any other install failure fails them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentbridge.agent.tmux import TmuxServer
from agentbridge.testing.mock_model import MockModelServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AgentClis:
    """Paths of the installed binaries."""

    claude: Path
    codex: Path


@pytest.fixture(scope="session")
def agent_clis() -> AgentClis:
    """Install (or find) the pinned CLIs; skip loudly only when npm is unreachable."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "install-agent-clis")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode == 3:
        pytest.skip(
            "!!! REAL-CLI TESTS SKIPPED: npm is unreachable, the real Claude Code / Codex CLIs "
            f"cannot be installed: {proc.stderr.strip()[-300:]}"
        )
    if proc.returncode != 0:
        pytest.fail(f"install-agent-clis failed ({proc.returncode}): {proc.stderr[-2000:]}")
    claude, codex = (Path(p) for p in proc.stdout.split())
    return AgentClis(claude, codex)


@pytest.fixture
async def mock_model() -> AsyncIterator[MockModelServer]:
    """The mock model server on 127.0.0.1, a free port."""
    async with MockModelServer() as server:
        yield server


@pytest.fixture
async def tmux_server() -> AsyncIterator[TmuxServer]:
    """A tmux server on a private socket, killed afterwards."""
    server = TmuxServer(f"ab-realcli-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        await server.kill_server()
