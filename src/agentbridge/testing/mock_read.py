"""The mock model reading a long message's inbox file (or an attached file), in chunks, as a
real model would.

Why chunks: the CLIs cap what one tool call shows the model — Codex 0.169.0 truncates a
command's output in the middle past ~10 kB ("Warning: truncated output"), Claude's ``Read``
shows 2000 lines and refuses files over its token limit. So the mock pages: Claude ``Read``
with ``offset``/``limit``, Codex ``sed -n 'A,Bp'``, until a chunk comes back short; then it
answers. Every chunk is in the follow-up requests, where tests check that the whole text
reached the model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["CHUNK_LINES", "INBOX_FILE", "ReadStep", "chunk_lines", "next_read"]

#: the file a long message's pointer names (``agentbridge.agent.inbox``), or an attached file
#: (``agentbridge.agent.attachments``: ``inbox/<message id>/<sanitized name>``)
INBOX_FILE = re.compile(r"\.agentbridge/inbox/\d+(?:\.md|/[A-Za-z0-9._-]+)")
#: lines per read: under Codex's output cap (100-char lines) and Claude's Read token limit
CHUNK_LINES = {"Read": 500, "exec_command": 40}
_WORKDIR = re.compile(r"(?:Primary working directory|Working directory): (/[^\n\\\"<]+)")
_NUMBERED = re.compile(r"^ *\d+(?:\t|→)", re.MULTILINE)
_TOTAL = re.compile(r"^Total output lines: (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class ReadStep:
    """One read to ask the CLI for: Claude ``Read`` arguments or a Codex shell command."""

    tool: str
    arguments: dict[str, Any]

    @property
    def command(self) -> str:
        """For the request record."""
        return self.arguments.get("cmd") or f"Read {json.dumps(self.arguments)}"


def _texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict) and "text" in b)
    return ""


def chunk_lines(output: str, tool: str) -> int:
    """How many lines of the file one tool output shows."""
    if tool == "Read":
        return len(_NUMBERED.findall(output))
    total = _TOTAL.search(output)
    if total:
        return int(total[1])
    body = output.split("Output:\n", 1)[-1]
    return len(body.splitlines())


def _offers(body: dict[str, Any], name: str) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and name in (t.get("name"), (t.get("function") or {}).get("name"))
        for t in tools
    )


def next_read(body: dict[str, Any], tool: str) -> ReadStep | None:
    """The next chunk to read, or None: no pointer in this turn, or the last chunk was short
    (time to answer). ``tool`` is ``Read`` (Claude) or ``exec_command`` (Codex); the CLIs'
    hidden title calls offer no tools and are answered plainly."""
    if not _offers(body, tool):
        return None
    items: Any = (
        body.get("messages") if isinstance(body.get("messages"), list) else body.get("input")
    )
    if not isinstance(items, list):
        return None
    start, path = -1, ""
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            continue
        m = INBOX_FILE.search(_texts(content))
        start, path = (i, m[0]) if m else (-1, "")
    if start < 0:
        return None
    calls, outputs = 0, []
    for item in items[start + 1 :]:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            calls += 1
        elif item.get("type") == "function_call_output":
            outputs.append(_texts(item.get("output")))
        content = item.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                calls += 1
            elif isinstance(block, dict) and block.get("type") == "tool_result":
                outputs.append(_texts(block.get("content")))
    size = CHUNK_LINES[tool]
    if calls and (not outputs or chunk_lines(outputs[-1], tool) < size):
        return None
    first = calls * size + 1
    if tool == "Read":
        wd = _WORKDIR.search(json.dumps(body.get("system", "")))
        absolute = f"{wd[1].strip().rstrip('/')}/{path}" if wd else path
        return ReadStep(tool, {"file_path": absolute, "offset": first, "limit": size})
    return ReadStep(tool, {"cmd": f"sed -n '{first},{first + size - 1}p' {path}"})
