"""The control-socket pointer files have one owner (``agent/socket_pointer.py``): the bridge's
(read by the permission hook) and each agent's (read by its MCP registration) are written
private and whole, and read the same way, an empty file meaning the default socket."""

from __future__ import annotations

import ast
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.agent.socket_pointer import POINTER, agent_socket, bridge_socket, write_pointer
from agentbridge.config import parse_config
from agentbridge.ledger.store import open_ledger
from agentbridge.runtimes.mcp_server import mcp_command
from agentbridge.supervisor.control import socket_path
from agentbridge.supervisor.control_mcp import McpHandlers

SRC = Path(__file__).resolve().parents[1] / "src" / "agentbridge"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, so a file written without an explicit mode would come out 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_only_one_module_spells_the_pointer_files_name() -> None:
    spelled = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value == POINTER
    ]
    assert spelled == ["agent/socket_pointer.py"]


async def test_the_agents_pointer_is_private_and_names_the_supervisors_socket(
    tmp_path: Path, umask_022: None
) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path / "s"),
            "ledger": {"path": str(tmp_path / "s" / "ledger.db")},
            "agents": {"a": {"runtime": "demo"}},
        }
    )

    class Worker:  # what McpHandlers reads of a worker: a session, no state dir of its own
        session = None

    ledger = await open_ledger(config.ledger.path)
    try:
        McpHandlers(ledger, config, {"a": Worker()})
    finally:
        await ledger.close()
    agent_dir = config.state_dir / "agents" / "a"
    assert _mode(agent_dir / POINTER) == 0o600 and _mode(agent_dir) == 0o700
    assert agent_socket(agent_dir) == socket_path(config)
    assert mcp_command("a", agent_dir)[-1] == str(socket_path(config))
    assert [p.name for p in agent_dir.iterdir()] == [POINTER]  # nothing left aside


def test_both_readers_read_what_the_writer_wrote(tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "state"
    agent_dir = state / "agents" / "a"
    write_pointer(state, "/run/bridge.sock")
    write_pointer(agent_dir, Path("/run/agent.sock"))
    assert bridge_socket(state) == Path("/run/bridge.sock")
    assert agent_socket(agent_dir) == Path("/run/agent.sock")
    assert _mode(state / POINTER) == _mode(agent_dir / POINTER) == 0o600
    write_pointer(state, "/run/moved.sock")  # a restart names a new place: replaced whole
    assert (state / POINTER).read_text() == "/run/moved.sock\n"
    assert _mode(state / POINTER) == 0o600


def test_an_empty_or_missing_pointer_means_the_default_socket(tmp_path: Path) -> None:
    state = tmp_path / "state"
    agent_dir = state / "agents" / "a"
    assert bridge_socket(state) == state / "control.sock"
    assert agent_socket(agent_dir) == state / "control.sock"
    agent_dir.mkdir(parents=True)
    (state / POINTER).write_text("\n")
    (agent_dir / POINTER).write_text("  \n")
    assert bridge_socket(state) == state / "control.sock"
    assert mcp_command("a", agent_dir)[-1] == str(state / "control.sock")
