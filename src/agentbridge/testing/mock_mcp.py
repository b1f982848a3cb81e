"""The mock model calls an MCP tool: ``#mock:mcp=<tool>:<text>`` in the user's message.

The tool is looked up by name in the request's own ``tools`` list (the CLI names MCP tools its
own way: Claude ``mcp__agentbridge__reply``; Codex its qualified name), so the call is one the
CLI really offered. The call carries ``{"text": <text>}`` (``send_file``: ``{"path": <text>}``;
``ask``: ``{"question": <text>, "timeout_s": 120}``); after its result comes back the mock
answers as usual (``answer_for``), ending the turn.
A request that does not offer the tool (Claude's side requests: a session title) is answered
as usual.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from agentbridge.testing.mock_sse import _sse

__all__ = ["claude_call_events", "codex_call_events", "wants_mcp"]

WAIT_TOOL = "WaitForMcpServers"  #: Claude Code's tool for MCP servers still connecting
MCP_DIRECTIVE = re.compile(r"#mock:mcp=(?P<tool>[a-z_]+):(?P<text>[^\n]*)")


def _tool_names(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(namespace, name) of every tool offered: Codex groups an MCP server's tools in a
    ``namespace`` tool (``mcp__agentbridge``), Claude names each ``mcp__agentbridge__<tool>``."""
    names: list[tuple[str | None, str]] = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
            space = str(tool.get("name"))
            names += [(space, str(t.get("name"))) for t in tool["tools"] if isinstance(t, dict)]
            continue
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        if isinstance(name, str):
            names.append((None, name))
    return names


def _items(body: dict[str, Any]) -> list[Any]:
    items = body.get("messages") if isinstance(body.get("messages"), list) else body.get("input")
    return items if isinstance(items, list) else []


def _user_texts(body: dict[str, Any]) -> str:
    """Every user text of the conversation (the directive's turn may be past a tool result)."""
    texts: list[str] = []
    for item in _items(body):
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        content = item.get("content")
        blocks = [content] if isinstance(content, str) else content or []
        for block in blocks if isinstance(blocks, list) else []:
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                texts.append(block["text"])
    return "\n".join(texts)


def _called(body: dict[str, Any]) -> set[str]:
    """Names of the tools the model already called in this conversation."""
    names: set[str] = set()
    for item in _items(body):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call" and isinstance(item.get("name"), str):
            names.add(item["name"])
        content = item.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                names.add(str(block.get("name")))
    return names


def wants_mcp(body: dict[str, Any]) -> tuple[str, dict[str, Any], str | None] | None:
    """(the offered tool's name, its arguments, its namespace) when a user text asks and the
    call was not made yet; Claude's ``WaitForMcpServers`` first while our server connects."""
    m = MCP_DIRECTIVE.search(_user_texts(body))
    if m is None:
        return None
    tool, text = m["tool"], m["text"].strip()
    offered, called = _tool_names(body), _called(body)
    found = next(
        ((space, n) for space, n in offered if "agentbridge" in f"{space}{n}" and n.endswith(tool)),
        None,
    )
    if found is None:  # a side request (Claude's session title), or the server still connecting
        if (None, WAIT_TOOL) in offered and WAIT_TOOL not in called:
            return WAIT_TOOL, {"servers": ["agentbridge"]}, None
        return None
    space, name = found
    if name in called:
        return None
    arguments = {"send_file": {"path": text}, "ask": {"question": text, "timeout_s": 120}}
    return name, arguments.get(tool, {"text": text}), space


def claude_call_events(
    name: str,
    arguments: dict[str, Any],
    namespace: str | None,
    model: str,
    msg_id: str,
    in_tokens: int,
) -> Iterator[bytes]:
    """One ``tool_use`` block of ``name``, ``stop_reason: tool_use``."""
    usage = {"input_tokens": in_tokens, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    yield _sse("message_start", {"type": "message_start", "message": message})
    block = {"type": "tool_use", "id": msg_id.replace("msg_", "toolu_"), "name": name, "input": {}}
    yield _sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    end = {"stop_reason": "tool_use", "stop_sequence": None}
    yield _sse(
        "message_delta", {"type": "message_delta", "delta": end, "usage": {"output_tokens": 20}}
    )
    yield _sse("message_stop", {"type": "message_stop"})


def codex_call_events(
    name: str,
    arguments: dict[str, Any],
    namespace: str | None,
    model: str,
    resp_id: str,
    in_tokens: int,
) -> Iterator[bytes]:
    """One ``function_call`` item of ``name`` (in ``namespace``: how Codex names MCP tools)."""
    base = {"id": resp_id, "object": "response", "model": model, "created_at": int(time.time())}
    yield _sse(
        "response.created",
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
    )
    item: dict[str, Any] = {
        "type": "function_call",
        "id": resp_id.replace("resp_", "fc_"),
        "call_id": resp_id.replace("resp_", "call_"),
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }
    if namespace is not None:
        item["namespace"] = namespace
    for kind in ("response.output_item.added", "response.output_item.done"):
        yield _sse(kind, {"type": kind, "output_index": 0, "item": item})
    usage = {"input_tokens": in_tokens, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": in_tokens + 20}  # fmt: skip
    response = {**base, "status": "completed", "output": [item], "usage": usage}
    yield _sse("response.completed", {"type": "response.completed", "response": response})
