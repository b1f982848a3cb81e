"""``agentbridge mcp``: the agent's own tools, as a stdio MCP server (the official ``mcp`` SDK).

The bridge registers it in each agent's CLI config (``runtimes/claude/mcp.py``,
``runtimes/codex/mcp.py``) with ``--agent NAME --socket PATH``; nothing else reaches the
agent's environment. Each tool is one control-socket request (``supervisor/control_mcp.py``),
so the supervisor decides: correlation to the message in flight, rate limits, the cwd fence,
and the outbox row. Without a supervisor a tool answers a clear error the model can read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

#: the server's name in the agents' MCP configs (its tools: ``mcp__agentbridge__*``)
MCP_NAME = "agentbridge"
AGENT_ENV, SOCKET_ENV = "AGENTBRIDGE_AGENT", "AGENTBRIDGE_SOCKET"
_TIMEOUT = 15.0
_RESTART_GRACE = 60.0  #: how long an ask outlives an unreachable supervisor


class BridgeUnreachable(Exception):
    """The supervisor's control socket did not answer."""


async def control_call(socket: Path, cmd: str, **fields: Any) -> dict[str, Any]:
    """One JSON-line request to the supervisor's socket; a refusal raises with its words."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket), limit=2**20), timeout=_TIMEOUT
        )
    except (OSError, TimeoutError) as exc:
        raise BridgeUnreachable(
            f"the agentbridge supervisor is not reachable at {socket} ({exc or 'timeout'}): "
            "is `agentbridge up` running?"
        ) from None
    try:
        writer.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise BridgeUnreachable(f"no answer from the supervisor at {socket}: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    answer = json.loads(line) if line else None
    if not isinstance(answer, dict):
        raise BridgeUnreachable(f"the supervisor at {socket} closed without an answer")
    if not answer.get("ok"):
        raise ValueError(str(answer.get("error") or "refused"))
    return answer


def _summary(answer: dict[str, Any]) -> str:
    reply = answer.get("reply") or {}
    how = (
        "agent-initiated"
        if answer.get("initiated")
        else f"as a reply to message {answer.get('message_id')}"
    )
    return (
        f"queued as outbox #{reply.get('id')} to {reply.get('channel')}:"
        f"{reply.get('conversation')} ({how}); the bridge delivers it"
    )


def build_server(agent: str, socket: Path) -> Any:
    """The MCP server with the tools of one agent (``Any``: the SDK's class is imported lazily
    so every other command starts without it)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(
        MCP_NAME,
        instructions=(
            "Talk to the user of the chat that sent you the current message: `reply` for a "
            "progress note or an early answer, `send_file` for a file under your working "
            "directory, `notify` for a message nobody asked for (it goes to the default "
            "conversation), `ask` to put a question to the user and wait for the answer, "
            "`list_conversations` to see who talks to you."
        ),
    )

    async def call(cmd: str, **fields: Any) -> dict[str, Any]:
        try:
            return await control_call(socket, cmd, agent=agent, **fields)
        except (BridgeUnreachable, ValueError) as exc:
            raise ToolError(str(exc)) from None

    @server.tool()
    async def reply(text: str) -> str:
        """Send a message now to the conversation of the message you are working on (e.g.
        progress); your final answer is still sent as usual when the turn ends."""
        return _summary(await call("mcp-reply", text=text))

    @server.tool()
    async def send_file(path: str, caption: str = "") -> str:
        """Send a file under your working directory to the current conversation."""
        absolute = Path(path) if os.path.isabs(path) else Path.cwd() / path
        return _summary(await call("mcp-send-file", path=str(absolute), caption=caption))

    @server.tool()
    async def notify(text: str) -> str:
        """Send a message nobody asked for (e.g. "tests finished") to your default
        conversation; rate-limited."""
        return _summary(await call("mcp-notify", text=text))

    @server.tool()
    async def ask(question: str, timeout_s: float = 300, choices: list[str] | None = None) -> str:
        """Ask the user of the current conversation (or of your default one, when no message is
        in flight) and wait up to ``timeout_s`` seconds for the answer. Their next message
        there is the answer (``choices``: buttons where the chat has them, else numbered).
        Returns the answer, or says that none came in time — then decide without it."""
        return await wait_for_answer(socket, agent, question, timeout_s, choices or [], call)

    @server.tool()
    async def list_conversations() -> str:
        """The conversations that talked to you lately, the current one and the default."""
        answer = await call("mcp-conversations")
        answer.pop("ok", None)
        return json.dumps(answer, indent=1)

    return server


async def wait_for_answer(
    socket: Path,
    agent: str,
    question: str,
    timeout_s: float,
    choices: list[str],
    call: Any,
) -> str:
    """Open the ask, then long-poll ``mcp-ask-wait`` until it is settled. The answer lives in
    the ledger, so a supervisor restart costs a reconnect (retried until the deadline plus
    ``_RESTART_GRACE``), not the answer."""
    from mcp.server.mcpserver.exceptions import ToolError

    opened = (await call("mcp-ask", question=question, timeout_s=timeout_s, choices=choices))["ask"]
    limit = time.monotonic() + (opened["expires_at"] - opened["created_at"]) + _RESTART_GRACE
    while True:
        try:
            ask = (await control_call(socket, "mcp-ask-wait", agent=agent, id=opened["id"]))["ask"]
        except BridgeUnreachable as exc:
            if time.monotonic() > limit:
                raise ToolError(f"ask {opened['short_id']}: {exc}") from None
            await asyncio.sleep(0.5)  # the supervisor restarts: the answer waits in its ledger
            continue
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        if ask["state"] == "answered":
            return f"answer from {ask['answered_by']}: {ask['answer']}"
        if ask["state"] == "expired" and ask["answered_by"] == "turn-ended":
            return f"ask {ask['short_id']} closed: the turn it was asked in has ended"
        if ask["state"] == "expired":
            span = round(ask["expires_at"] - ask["created_at"], 1)
            return f"no answer within {span:g} s (ask {ask['short_id']}): decide without it"


def add_parsers(sub: Any) -> None:
    """``agentbridge mcp --agent NAME --socket PATH``."""
    p = sub.add_parser("mcp", help="serve the agent-side tools over stdio (MCP)")
    p.add_argument("--agent", default=os.environ.get(AGENT_ENV), help="the agent it speaks for")
    p.add_argument("--socket", default=os.environ.get(SOCKET_ENV), help="the control socket")
    p.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve until the agent's CLI closes stdin."""
    from agentbridge.cli.common import CliError

    if not args.agent or not args.socket:
        raise CliError("mcp: --agent and --socket are required (the bridge writes them)")
    build_server(args.agent, Path(args.socket)).run("stdio")
    return 0
