"""Streaming event builders of the mock model server (Anthropic SSE and OpenAI Responses).

Why separate: the wire formats are long and exact; the server module keeps the behaviour.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "claude_events",
    "claude_tool_events",
    "codex_events",
    "codex_tool_events",
    "wants_tool",
]

TOOL_DIRECTIVE = re.compile(r"#mock:tool=(?P<cmd>[^\n]+)")


def _last_user_text(body: dict[str, Any]) -> str | None:
    """The text of the last message when it is the user's own (not a tool result), else None."""
    items = body.get("messages") if isinstance(body.get("messages"), list) else body.get("input")
    if not isinstance(items, list):
        return None
    # Claude appends "system" messages (agent listings) after the prompt: look past them
    tail = [
        i for i in items if not (isinstance(i, dict) and i.get("role") in ("system", "developer"))
    ]
    if not tail or not isinstance(tail[-1], dict):
        return None
    last = tail[-1]
    if last.get("role") != "user":
        return None  # Codex: a function_call_output item has no role
    content = last.get("content")
    blocks = [content] if isinstance(content, str) else content if isinstance(content, list) else []
    texts = []
    for block in blocks:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, dict):
            if block.get("type") == "tool_result":
                return None
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
    return "\n".join(texts)


def wants_tool(body: dict[str, Any]) -> str | None:
    """The shell command to call a tool with: the last message is the user's own text (not a
    tool result) and holds ``#mock:tool=<command>``."""
    m = TOOL_DIRECTIVE.search(_last_user_text(body) or "")
    return m["cmd"].strip() if m else None


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def claude_events(answer: str, model: str, msg_id: str, in_tokens: int) -> Iterator[bytes]:
    usage = {
        "input_tokens": in_tokens,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
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
    block = {"type": "text", "text": ""}
    yield _sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    delta = {"type": "text_delta", "text": answer}
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    end = {"stop_reason": "end_turn", "stop_sequence": None}
    out_usage = {"output_tokens": max(1, len(answer) // 4)}
    yield _sse("message_delta", {"type": "message_delta", "delta": end, "usage": out_usage})
    yield _sse("message_stop", {"type": "message_stop"})


def codex_events(answer: str, model: str, resp_id: str, in_tokens: int) -> Iterator[bytes]:
    item_id = resp_id.replace("resp_", "msg_")
    base = {"id": resp_id, "object": "response", "model": model, "created_at": int(time.time())}
    yield _sse(
        "response.created",
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
    )
    item: dict[str, Any] = {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    yield _sse(
        "response.output_item.added",
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    )
    yield _sse(
        "response.output_text.delta",
        {
            "type": "response.output_text.delta",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": answer,
        },
    )
    done = {
        **item,
        "status": "completed",
        "content": [{"type": "output_text", "text": answer, "annotations": []}],
    }
    yield _sse(
        "response.output_item.done",
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    )
    out_tokens = max(1, len(answer) // 4)
    usage = {
        "input_tokens": in_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": in_tokens + out_tokens,
    }
    response = {**base, "status": "completed", "output": [done], "usage": usage}
    yield _sse("response.completed", {"type": "response.completed", "response": response})


def claude_tool_events(
    command: str, model: str, msg_id: str, in_tokens: int, read: dict[str, Any] | None = None
) -> Iterator[bytes]:
    """A ``Bash`` tool_use block (or ``Read`` with the arguments ``read``), ``stop_reason:
    tool_use``: Claude runs (or asks to run) it."""
    usage = {"input_tokens": in_tokens, "output_tokens": 1, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}  # fmt: skip
    message: dict[str, Any] = {"id": msg_id, "type": "message", "role": "assistant",
                               "model": model, "content": [], "stop_reason": None,
                               "stop_sequence": None, "usage": usage}  # fmt: skip
    yield _sse("message_start", {"type": "message_start", "message": message})
    block: dict[str, Any] = {
        "type": "tool_use",
        "id": msg_id.replace("msg_", "toolu_"),
        "name": "Read" if read else "Bash",
        "input": {},
    }
    yield _sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    args = json.dumps(read if read else {"command": command, "description": "mock tool call"})
    delta = {"type": "input_json_delta", "partial_json": args}
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    end = {"stop_reason": "tool_use", "stop_sequence": None}
    yield _sse(
        "message_delta", {"type": "message_delta", "delta": end, "usage": {"output_tokens": 20}}
    )
    yield _sse("message_stop", {"type": "message_stop"})


def codex_tool_events(
    command: str, model: str, resp_id: str, in_tokens: int, escalate: bool = True
) -> Iterator[bytes]:
    """An ``exec_command`` function_call item: Codex runs (or asks to run) the command;
    ``escalate`` asks for it outside the sandbox (so an "on-request" Codex shows its dialog)."""
    base = {"id": resp_id, "object": "response", "model": model, "created_at": int(time.time())}
    yield _sse(
        "response.created",
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
    )
    call_id = resp_id.replace("resp_", "call_")
    item = {
        "type": "function_call",
        "id": resp_id.replace("resp_", "fc_"),
        "call_id": call_id,
        "name": "exec_command",
        "arguments": json.dumps(
            {"cmd": command, "sandbox_permissions": "require_escalated", "justification": "mock"}
            if escalate
            else {"cmd": command}
        ),
        "status": "completed",
    }
    yield _sse(
        "response.output_item.added",
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    )
    yield _sse(
        "response.output_item.done",
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    )
    usage = {"input_tokens": in_tokens, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": in_tokens + 20}  # fmt: skip
    response = {**base, "status": "completed", "output": [item], "usage": usage}
    yield _sse("response.completed", {"type": "response.completed", "response": response})
