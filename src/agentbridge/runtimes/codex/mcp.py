"""Register ``agentbridge mcp`` with Codex for one agent: ``-c mcp_servers.agentbridge.*``.

Like the relay hooks (``profile.hook_overrides``), the server is given in Codex's session-flags
layer, never written into ``$CODEX_HOME/config.toml``: two agents sharing one CODEX_HOME each
get a server speaking for themselves, and the user's file stays theirs.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from agentbridge.config import AgentConfig
from agentbridge.runtimes.mcp_server import ASK_TOOL_TIMEOUT, MCP_NAME, mcp_command


def mcp_overrides(agent: AgentConfig, state_dir: Path) -> list[str]:
    """``-c`` flags declaring our stdio server for this invocation."""
    command = mcp_command(agent.name, state_dir)
    # JSON strings and arrays of them are TOML too (raw non-ASCII kept)
    values = {
        "command": json.dumps(command[0], ensure_ascii=False),
        "args": json.dumps(command[1:], ensure_ascii=False),
        # the session starts only once our server answered its handshake (0.169 starts the
        # others in the background: a first turn could miss the tools), and says so if not
        "required": "true",
        # `ask` waits for a person (up to an hour): Codex's 60 s default would cut it off
        "tool_timeout_sec": f"{ASK_TOOL_TIMEOUT:.1f}",
    }
    out: list[str] = []
    for key, value in values.items():
        tomllib.loads(f"x = {value}")  # a value TOML cannot carry must fail here, not in Codex
        out += ["-c", f"mcp_servers.{MCP_NAME}.{key}={value}"]
    return out


def with_mcp(agent: AgentConfig, state_dir: Path, argv: list[str]) -> list[str]:
    """``argv`` + our ``-c mcp_servers.agentbridge.*`` flags."""
    return [*argv, *mcp_overrides(agent, state_dir)]
