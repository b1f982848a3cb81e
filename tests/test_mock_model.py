"""The mock model server: deterministic answers, error injection, tool calls, proxy refusal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from agentbridge.testing.mock_model import MockModelServer, answer_for, user_text


def _sse_data(raw: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


async def test_claude_stream_answers_the_users_text_only() -> None:
    body = {
        "model": "m",
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ignore me</system-reminder>"},
                    {"type": "text", "text": "hello"},
                ],
            },
            {"role": "system", "content": "agent listing"},
        ],
    }
    assert user_text(body) == "hello"
    async with MockModelServer() as mock, aiohttp.ClientSession() as http:
        url = f"{mock.base_url}/v1/messages?beta=true"
        async with http.post(url, json=body) as resp:
            events = _sse_data(await resp.text())
    kinds = [e["type"] for e in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2]["delta"]["text"] == answer_for("hello")
    assert mock.requests[0].answer == answer_for("hello")


async def test_codex_stream_and_error_injection() -> None:
    body = {
        "model": "m",
        "stream": True,
        "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "<environment_context>x</environment_context>"},
            ]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
    }  # fmt: skip
    async with MockModelServer() as mock, aiohttp.ClientSession() as http:
        url = f"{mock.base_url}/v1/responses"
        async with http.post(url, json=body) as resp:
            events = _sse_data(await resp.text())
        assert events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["usage"]["total_tokens"] > 0
        assert events[2]["delta"] == answer_for("hi")
        mock.fail_next(1, 429, retryable=False)
        async with http.post(url, json=body) as resp:
            assert resp.status == 429 and resp.headers["x-should-retry"] == "false"
        async with http.post(url, json=body) as resp:
            assert resp.status == 200


async def test_tool_directive_calls_a_tool_once() -> None:
    prompt = {"role": "user", "content": "do it #mock:tool=echo hi"}
    async with MockModelServer() as mock, aiohttp.ClientSession() as http:
        url = f"{mock.base_url}/v1/messages"
        body = {"stream": True, "messages": [prompt]}
        async with http.post(url, json=body) as resp:
            events = _sse_data(await resp.text())
        assert events[1]["content_block"]["type"] == "tool_use"
        assert json.loads(events[2]["delta"]["partial_json"])["command"] == "echo hi"
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
        body = {"stream": True, "messages": [prompt, {"role": "assistant", "content": []}, result]}
        async with http.post(url, json=body) as resp:
            events = _sse_data(await resp.text())
        assert events[1]["content_block"]["type"] == "text"


async def test_proxy_requests_to_other_hosts_are_refused() -> None:
    async with MockModelServer() as mock:
        requests = (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
        )
        for line in requests:
            reader, writer = await asyncio.open_connection(mock.host, mock.port)
            writer.write(line)
            await writer.drain()
            status = await reader.readline()
            writer.close()
            assert b" 403 " in status
        assert [r.host for r in mock.requests if r.refused] == ["example.com", "example.com"]


def _claude_turn(chunks: list[int]) -> dict[str, Any]:
    """A Claude request: the pointer prompt, then one Read call + result per chunk size."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "[agentbridge message=5 …] read .agentbridge/inbox/5.md"}
    ]
    for n, lines in enumerate(chunks):
        use = {"type": "tool_use", "id": f"t{n}", "name": "Read", "input": {}}
        messages.append({"role": "assistant", "content": [use]})
        shown = "\n".join(f"{i:6d}\tline" for i in range(1, lines + 1))
        result = {"type": "tool_result", "tool_use_id": f"t{n}", "content": shown}
        messages.append({"role": "user", "content": [result]})
    return {
        "system": [{"type": "text", "text": "Primary working directory: /w/proj\n"}],
        "tools": [{"name": "Read"}, {"name": "Bash"}],
        "messages": messages,
    }


def test_mock_reads_an_inbox_file_in_chunks_then_answers() -> None:
    from agentbridge.testing.mock_read import CHUNK_LINES, next_read

    size = CHUNK_LINES["Read"]
    first = next_read(_claude_turn([]), "Read")
    assert first is not None
    assert first.arguments == {"file_path": "/w/proj/.agentbridge/inbox/5.md", "offset": 1,
                               "limit": size}  # fmt: skip
    second = next_read(_claude_turn([size]), "Read")
    assert second is not None and second.arguments["offset"] == size + 1
    assert next_read(_claude_turn([size, 7]), "Read") is None  # a short chunk: the end
    no_tools = _claude_turn([])
    del no_tools["tools"]
    assert next_read(no_tools, "Read") is None  # the hidden title call: answered plainly
    pointer = {"type": "input_text", "text": ".agentbridge/inbox/9.md"}
    output = "Output:\n" + "l\n" * CHUNK_LINES["exec_command"]
    codex = {
        "tools": [{"type": "function", "name": "exec_command"}],
        "input": [
            {"role": "user", "content": [pointer]},
            {"type": "function_call", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "output": output},
        ],
    }
    step = next_read(codex, "exec_command")
    size = CHUNK_LINES["exec_command"]
    assert step is not None
    assert step.command == f"sed -n '{size + 1},{2 * size}p' .agentbridge/inbox/9.md"


def test_spill_threshold_overrides_the_profiles_paste_limit() -> None:
    from agentbridge.agent.turn import paste_limit
    from agentbridge.config import InjectionConfig, parse_config
    from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile

    assert paste_limit(ClaudeCodeProfile(), InjectionConfig()) == ClaudeCodeProfile.paste_limit
    assert paste_limit(CodexProfile(), InjectionConfig()) == 1_000_000
    assert paste_limit(CodexProfile(), InjectionConfig(spill_threshold=8000)) == 8000
    parsed = parse_config({"injection": {"spill_threshold": 5000}}, None)
    assert parsed.injection.spill_threshold == 5000
    assert parse_config({}, None).injection.spill_threshold is None


async def test_a_slow_answer_ends_when_the_server_stops() -> None:
    """``#mock:slow=`` must not hold shutdown for its whole delay (an interrupted CLI's turn)."""
    body = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "x #mock:slow=60"}],
    }
    mock = await MockModelServer().start()
    async with aiohttp.ClientSession() as http:
        post = asyncio.ensure_future(http.post(f"{mock.base_url}/v1/messages", json=body))
        while not mock.requests:
            await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(mock.stop(), 10)
        assert asyncio.get_running_loop().time() - started < 10
        post.cancel()
