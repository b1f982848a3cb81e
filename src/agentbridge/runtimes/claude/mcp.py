"""Register ``agentbridge mcp`` with Claude Code for one agent: ``--mcp-config`` + allowed.

The server goes into ``<state_dir>/claude-mcp.json`` (0600), passed with ``--mcp-config``, so
neither the user's ``.claude.json`` nor the project's ``.mcp.json`` is written and two agents
sharing a config dir each get their own. Its tools are pre-allowed (``--allowedTools
mcp__agentbridge``): a permission prompt for "send a progress note" would stall the turn.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentbridge.config import AgentConfig
from agentbridge.runtimes import common
from agentbridge.runtimes.mcp_server import MCP_NAME, mcp_command

MCP_FILE = "claude-mcp.json"


def with_mcp(agent: AgentConfig, state_dir: Path, argv: list[str]) -> list[str]:
    """``argv`` + ``--mcp-config <file>`` + ``--allowedTools mcp__agentbridge``."""
    command = mcp_command(agent.name, state_dir)
    server = {"type": "stdio", "command": command[0], "args": command[1:]}
    path = state_dir / MCP_FILE
    common.atomic_write(path, json.dumps({"mcpServers": {MCP_NAME: server}}, indent=2) + "\n")
    return [*argv, "--mcp-config", str(path), "--allowedTools", f"mcp__{MCP_NAME}"]
