"""How an agent's CLI starts ``agentbridge mcp`` for that agent (shared by both CLIs).

The command carries the agent's name and the supervisor's control socket, nothing secret:
the socket is 0600 in a 0700 directory, so only this user reaches it anyway. The supervisor
writes the socket's path into ``<agent state dir>/control-socket`` at start-up
(``agent/socket_pointer.py`` owns that file); a profile prepared before that (a test,
``doctor``) falls back to the default place, ``<state_dir>/control.sock``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agentbridge.agent.socket_pointer import agent_socket

MCP_NAME = "agentbridge"  #: the server's name in the CLIs' configs: tools ``mcp__agentbridge__*``
TOOLS = ("reply", "send_file", "ask", "notify", "list_conversations")
#: seconds a CLI lets one tool call run: ``ask``'s longest wait (an hour) and a restart's grace
ASK_TOOL_TIMEOUT = 3600.0 + 120.0


def mcp_command(agent: str, state_dir: Path) -> list[str]:
    """argv of the stdio server: this very Python, so the agent's PATH does not matter."""
    return [
        sys.executable,
        "-m",
        "agentbridge.cli",
        "mcp",
        "--agent",
        agent,
        "--socket",
        str(agent_socket(state_dir)),
    ]
