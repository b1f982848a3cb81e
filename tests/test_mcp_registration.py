"""How the bridge registers ``agentbridge mcp`` with each CLI, and the file item's shape."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from agentbridge.agent.socket_pointer import write_pointer
from agentbridge.config import AgentConfig, ConfigError, parse_config
from agentbridge.delivery.attachments import file_ref, file_text
from agentbridge.models import OutboxItem
from agentbridge.runtimes.claude import mcp as claude_mcp
from agentbridge.runtimes.codex import mcp as codex_mcp
from agentbridge.runtimes.mcp_server import mcp_command
from agentbridge.states import OutboxState
from agentbridge.supervisor.control_mcp import mcp_settings


def _state(tmp_path: Path, pointer: str | None = None) -> Path:
    state = tmp_path / "state" / "agents" / "a1"
    state.mkdir(parents=True)
    if pointer is not None:
        write_pointer(state, pointer)
    return state


def test_the_command_names_the_agent_and_the_supervisors_socket(tmp_path: Path) -> None:
    state = _state(tmp_path, "/run/ab/control.sock")
    argv = mcp_command("a1", state)
    assert argv[1:5] == ["-m", "agentbridge.cli", "mcp", "--agent"]
    assert argv[5:] == ["a1", "--socket", "/run/ab/control.sock"]
    fallback = mcp_command("a1", _state(tmp_path / "other"))
    assert fallback[-1] == str(tmp_path / "other" / "state" / "control.sock")


def test_claude_gets_its_own_mcp_config_file_and_the_tools_allowed(tmp_path: Path) -> None:
    state = _state(tmp_path, "/s.sock")
    argv = claude_mcp.with_mcp(AgentConfig(name="a1"), state, ["claude"])
    path = state / claude_mcp.MCP_FILE
    assert argv == ["claude", "--mcp-config", str(path), "--allowedTools", "mcp__agentbridge"]
    server = json.loads(path.read_text())["mcpServers"]["agentbridge"]
    assert server["type"] == "stdio" and server["args"][-3:] == ["a1", "--socket", "/s.sock"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_codex_gets_session_flags_that_parse_as_toml(tmp_path: Path) -> None:
    state = _state(tmp_path, '/odd "dir"/ü.sock')
    flags = codex_mcp.mcp_overrides(AgentConfig(name="a1"), state)
    assert flags[::2] == ["-c"] * 4
    doc = tomllib.loads("\n".join(flags[1::2]))
    server = doc["mcp_servers"]["agentbridge"]
    assert server["args"][-3:] == ["a1", "--socket", '/odd "dir"/ü.sock']
    assert server["required"] is True
    assert server["tool_timeout_sec"] == 3720.0  # `ask` waits for a person, not 60 s


def test_a_file_item_is_known_by_its_key_not_its_text(tmp_path: Path) -> None:
    text = file_text(tmp_path / "r (1).txt", 12, "see this")

    def item(key: str) -> OutboxItem:
        return OutboxItem(1, None, "local", "c", text, key, None, OutboxState.PENDING, 0,
                          0.0, 0.0, None, None, 0.0, 0.0)  # fmt: skip

    ref = file_ref(item("agent-file:agent-mcp:1:abc"))
    assert ref is not None
    assert (ref.path, ref.size, ref.caption) == (tmp_path / "r (1).txt", 12, "see this")
    assert file_ref(item("agent-reply:1:abc")) is None  # the same words in a plain reply


def test_mcp_config_is_checked(tmp_path: Path) -> None:
    config = parse_config(
        {
            "mcp": {"notify_channel": "local", "notify_conversation": "ops",
                    "agents": {"b": {"rate_per_minute": 3}}},
            "agents": {"a": {}, "b": {}},
        }
    )  # fmt: skip
    assert mcp_settings(config, "a").rate_per_minute == 10
    assert mcp_settings(config, "b").rate_per_minute == 3
    assert mcp_settings(config, "b").notify_conversation == "ops"
    with pytest.raises(ConfigError, match="unknown key"):
        mcp_settings(parse_config({"mcp": {"rate": 1}}), "demo")
    with pytest.raises(ConfigError, match="must be an integer >= 1"):
        mcp_settings(parse_config({"mcp": {"max_file_bytes": "big"}}), "demo")
