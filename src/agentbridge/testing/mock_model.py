"""A mock model server for the real agent CLIs: Claude's Messages API and Codex's Responses API.

Why: the real-CLI tests run Claude Code and Codex offline. This server answers both APIs with
streaming replies derived deterministically from the user's text (``answer_for``), so a test
knows the exact answer each injected message must produce. A user text holding
``#mock:tool=<shell command>`` gets a tool call instead (Claude ``Bash``, Codex
``exec_command``), so permission dialogs and tool turns can be produced for real; a user text
naming an inbox file (``.agentbridge/inbox/N.md``, a long message's pointer) gets a call reading
that file in chunks (``mock_read.py``: Claude ``Read``, Codex ``exec_command`` with ``sed``),
and the final answer comes after the last chunk, so a test sees the file's whole content in the
follow-up requests; one holding
``#mock:slow=<seconds>`` is answered that late (a long turn to interrupt). It records
every request, can fail the next N requests (429/529/500…) to make the CLIs show their real
error screens, and refuses (403) proxy requests to any non-loopback host, so a CLI pointed at
it via ``HTTPS_PROXY`` can never reach the internet.

In-process: ``async with MockModelServer() as mock: mock.base_url``.
Standalone: ``python -m agentbridge.testing.mock_model --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from agentbridge.testing.mock_mcp import claude_call_events, codex_call_events, wants_mcp
from agentbridge.testing.mock_read import next_read
from agentbridge.testing.mock_sse import (
    claude_events,
    claude_tool_events,
    codex_events,
    codex_tool_events,
    wants_tool,
)

__all__ = ["MockModelServer", "RecordedRequest", "answer_for", "user_text"]

SKIPPED_PREFIXES = (
    "<system-reminder>",
    "<environment_context>",
    "<user_instructions>",
    "<permissions instructions>",
    "<user_shell_command>",
    "# AGENTS.md instructions",
)

MAX_BODY = 64 * 1024 * 1024  #: largest request body accepted

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "mock: bad request"),
    429: ("rate_limit_error", "mock: rate limited"),
    500: ("api_error", "mock: internal server error"),
    529: ("overloaded_error", "mock: overloaded"),
}


_SLOW = re.compile(r"#mock:slow=(\d+(?:\.\d+)?)")


def answer_for(text: str) -> str:
    """The mock's answer to a user text: deterministic, so tests assert it exactly."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"mock answer: {digest} {len(text)} chars"


def _block_texts(content: Any) -> Iterator[str]:
    """Text of a message's content: a plain string or a list of text/input_text blocks."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("text", "input_text"):
                text = block.get("text")
                if isinstance(text, str):
                    yield text


def user_text(body: dict[str, Any]) -> str:
    """The user's text of a Messages or Responses request: the last user message, minus the
    blocks the CLIs inject (system reminders, environment context)."""
    items = body.get("messages")
    if not isinstance(items, list):
        raw = body.get("input")
        items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        texts = [
            t
            for t in _block_texts(item.get("content"))
            if not t.lstrip().startswith(SKIPPED_PREFIXES)
        ]
        if texts:
            return "\n".join(texts)
    return ""


@dataclass
class RecordedRequest:
    """One request as the mock saw it (proxy refusals included, with ``refused=True``)."""

    method: str
    path: str
    host: str
    body: dict[str, Any] | None
    status: int
    answer: str | None = None
    refused: bool = False
    tool_command: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def user_text(self) -> str:
        """The user's text the answer was derived from ("" when none)."""
        return user_text(self.body) if self.body else ""


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MockModelServer:
    """The mock server; ``fail_next`` injects errors, ``requests`` records everything."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, reply_delay: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.reply_delay = reply_delay
        self.requests: list[RecordedRequest] = []
        self._failures: list[int] = []
        self._retryable = True
        self._usage_limit = False
        self._ids = itertools.count(1)
        self._runner: web.ServerRunner | None = None
        self._stopping = asyncio.Event()  # ends a slow answer's wait when the server stops

    # ------------------------------------------------------------------ control

    def fail_next(
        self, count: int, status: int = 429, retryable: bool = True, usage_limit: bool = False
    ) -> None:
        """Answer the next ``count`` model requests with HTTP ``status`` (429, 529, 500, 400).

        ``retryable=False`` adds ``x-should-retry: false`` so the CLI gives up at once;
        ``usage_limit=True`` adds Anthropic's unified rate-limit headers (a plan's usage limit,
        reset in one hour): Claude then shows its "hit your limit · resets …" screen.
        """
        if status not in _ERRORS:
            raise ValueError(f"unsupported error status {status}; use one of {sorted(_ERRORS)}")
        self._failures = [status] * count
        self._retryable = retryable
        self._usage_limit = usage_limit

    def clear_failures(self) -> None:
        """Stop injecting errors."""
        self._failures = []

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (Claude appends ``/v1/messages``; Codex wants ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    def answered(self) -> list[RecordedRequest]:
        """The model requests that got a normal answer."""
        return [r for r in self.requests if r.answer is not None]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> MockModelServer:
        """Bind (port 0 → a free port, then ``self.port`` is the real one) and serve."""
        self._stopping.clear()
        # handler_cancellation: a client that hangs up (an interrupted CLI) ends its slow answer.
        server = web.Server(
            self._handle, request_factory=self._make_request, handler_cancellation=True
        )
        self._runner = web.ServerRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockModelServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ handling

    def _make_request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        """Requests of up to 64 MiB (aiohttp's 1 MiB default would cut long prompts short:
        the real APIs take 32 MB)."""
        loop = asyncio.get_running_loop()
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target_host = self._proxy_target(request)
        if target_host is not None and not _is_loopback(target_host):
            self.requests.append(
                RecordedRequest(
                    request.method, request.raw_path, target_host, None, 403, refused=True
                )
            )
            return web.Response(status=403, text="mock model server: outbound traffic refused\n")
        body: dict[str, Any] | None = None
        if request.can_read_body:
            try:
                parsed = json.loads(await request.read() or b"null")
                body = parsed if isinstance(parsed, dict) else None
            except (ValueError, UnicodeDecodeError):
                body = None
        record = RecordedRequest(request.method, request.path, request.host, body, 200)
        self.requests.append(record)
        path = request.path.rstrip("/")
        if path.startswith("/_mock/"):
            return self._control(request, path)
        if request.method == "POST" and path.endswith("/messages/count_tokens"):
            return web.json_response({"input_tokens": 10})
        if request.method == "POST" and path.endswith(("/messages", "/responses")):
            return await self._model_reply(request, record, path.endswith("/responses"))
        if request.method == "GET" and path.endswith("/models"):
            return web.json_response({"object": "list", "data": [], "models": []})
        record.status = 404
        return web.json_response(
            {"error": {"type": "not_found_error", "message": "mock: no such endpoint"}}, status=404
        )

    def _control(self, request: web.BaseRequest, path: str) -> web.Response:
        """Standalone-mode control: ``/_mock/fail?count=N&status=429&retryable=0``,
        ``/_mock/clear``, ``/_mock/requests``."""
        query = request.query
        if path == "/_mock/fail":
            retryable = query.get("retryable", "1") not in ("0", "false")
            usage = query.get("usage_limit", "0") not in ("0", "false")
            count, status = int(query.get("count", "1")), int(query.get("status", "429"))
            self.fail_next(count, status, retryable, usage)
        elif path == "/_mock/clear":
            self.clear_failures()
        elif path == "/_mock/requests":
            rows = [
                {"path": r.path, "status": r.status, "answer": r.answer, "user_text": r.user_text}
                for r in self.requests
                if not r.path.startswith("/_mock/")
            ]
            return web.json_response(rows)
        else:
            return web.json_response({"error": "unknown control path"}, status=404)
        return web.json_response({"ok": True, "pending_failures": len(self._failures)})

    @staticmethod
    def _proxy_target(request: web.BaseRequest) -> str | None:
        """The host a proxy request wants (CONNECT authority or absolute URL), else None."""
        if request.method == "CONNECT":
            return request.raw_path.rsplit(":", 1)[0]
        if request.raw_path.startswith(("http://", "https://")):
            return request.url.host or ""
        return None

    async def _model_reply(
        self, request: web.BaseRequest, record: RecordedRequest, codex: bool
    ) -> web.StreamResponse:
        if self._failures:
            status = self._failures.pop(0)
            record.status = status
            return self._error(status, codex)
        body = record.body or {}
        text = user_text(body)
        answer = answer_for(text)
        record.answer = answer
        slow = _SLOW.search(text)
        delay = float(slow.group(1)) if slow else self.reply_delay
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():  # shutting down: no late answer holds the server open
                return web.Response(status=503, text="mock model stopping")
        model = str(body.get("model") or "mock-model")
        n = next(self._ids)
        in_tokens = max(1, len(json.dumps(body)) // 4)
        step = next_read(body, "exec_command" if codex else "Read")
        if step is not None:  # a long message's pointer: read the file, answer afterwards
            record.answer = None
            record.tool_command = step.command
            events = (
                codex_tool_events(step.command, model, f"resp_mock{n}", in_tokens, escalate=False)
                if codex
                else claude_tool_events("", model, f"msg_mock{n}", in_tokens, read=step.arguments)
            )
        elif (call := wants_mcp(body)) is not None:  # an MCP tool the CLI offered
            record.answer = None
            record.tool_command = f"{call[2]}__{call[0]}" if call[2] else call[0]
            events = (codex_call_events if codex else claude_call_events)(
                *call, model, f"resp_mock{n}" if codex else f"msg_mock{n}", in_tokens
            )
        elif (command := wants_tool(body)) is not None:
            record.answer = None
            record.tool_command = command
            events = (
                codex_tool_events(command, model, f"resp_mock{n}", in_tokens)
                if codex
                else claude_tool_events(command, model, f"msg_mock{n}", in_tokens)
            )
        else:
            events = (
                codex_events(answer, model, f"resp_mock{n}", in_tokens)
                if codex
                else claude_events(answer, model, f"msg_mock{n}", in_tokens)
            )
        if not body.get("stream", codex):
            return web.json_response(self._plain_message(answer, model, n, in_tokens))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for chunk in events:
            await response.write(chunk)
        await response.write_eof()
        return response

    @staticmethod
    def _plain_message(answer: str, model: str, n: int, in_tokens: int) -> dict[str, Any]:
        return {
            "id": f"msg_mock{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": max(1, len(answer) // 4)},
        }

    def _error(self, status: int, codex: bool) -> web.Response:
        kind, message = _ERRORS[status]
        headers = {"request-id": f"req_mock{next(self._ids)}"}
        if not self._retryable:
            headers["x-should-retry"] = "false"
        if status == 429:
            headers["retry-after"] = "1"
            if self._usage_limit:
                reset = str(int(time.time()) + 3600)
                headers["anthropic-ratelimit-unified-status"] = "rejected"
                headers["anthropic-ratelimit-unified-reset"] = reset
                headers["anthropic-ratelimit-unified-5h-status"] = "rejected"
                headers["anthropic-ratelimit-unified-5h-reset"] = reset
                headers["anthropic-ratelimit-unified-representative-claim"] = "five_hour"
        if codex:
            code = "rate_limit_exceeded" if status == 429 else kind
            payload: dict[str, Any] = {"error": {"type": kind, "code": code, "message": message}}
        else:
            payload = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(payload, status=status, headers=headers)


async def _serve_forever(host: str, port: int, delay: float) -> None:
    async with MockModelServer(host, port, reply_delay=delay) as mock:
        print(f"mock model server on {mock.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m agentbridge.testing.mock_model --port N``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, args.reply_delay))


if __name__ == "__main__":
    main()
