"""End to end with the real Claude Code and Codex CLIs, offline, in a real tmux.

Each CLI runs against the mock model (``agentbridge.testing.mock_model``) with HOME in tmp, its
config seeded by its runtime profile, and ``HTTPS_PROXY``/``HTTP_PROXY`` pointing at the mock
(which refuses any non-loopback host), so nothing can leave the machine. Messages go in with
the real injector (paste → visible → Enter → verify); the profile's own parser must show each
one as PROMPT_RECORDED with its envelope, then TURN_COMPLETED with exactly the mock's answer.

``AGENTBRIDGE_CAPTURE_DIR=dir`` copies each session's transcript and last screen there (that is
how ``tests/data`` was captured).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from agentbridge.agent_events import AgentEvent, AgentEventKind, TranscriptParser
from agentbridge.config import AgentConfig
from agentbridge.envelope import Envelope, parse_envelope, wrap
from agentbridge.injector import InjectionOutcome, Injector
from agentbridge.protocols import LaunchSpec, RuntimeProfile, ScreenKind
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile
from agentbridge.sanitize import sanitize_text
from agentbridge.testing import async_wait_until
from agentbridge.testing.mock_model import MockModelServer, answer_for
from agentbridge.tmux import TmuxServer

from .conftest import AgentClis

pytestmark = pytest.mark.realcli

BODIES = [
    "hello, what is 2 + 2?",
    "line one\nline two\n\nline four after a blank line",
    "ünïcödé ✓ — 漢字かな — emoji 🚀 — RTL שלום",
    "a medium message " * 180,  # ~3 KB, shown as a paste placeholder
    "\n".join(f"{i:05d} " + "x" * 94 for i in range(100)),  # 10 KB, 100 lines
    "short again, after the long ones",
]
# ... and more of each kind, to reach 24 messages per CLI (each turn takes ~0.3 s).
BODIES += [
    f"message {i}: " + ("multi\nline " * (i % 4)) + "ünïcödé ✓ " * (i % 3) + "x" * (i * 37)
    for i in range(18)
]


class _InterimClaudeParser:
    """Stand-in used only while ``agentbridge.transcript.claude`` has not landed.

    Claude's first flush of a session can write its lines out of order (assistant or turn end
    before the user line), so a turn end is resolved through the ``parentUuid`` chain: walk up to
    the user prompt line, taking the last assistant text on the way; an end whose chain is not
    complete yet waits for the missing lines.
    """

    def __init__(self) -> None:
        self.corrupt_lines = 0
        self._by_uuid: dict[str, dict[str, Any]] = {}
        self._pending: list[dict[str, Any]] = []

    def reset(self) -> None:
        self._by_uuid.clear()
        self._pending.clear()

    def feed(self, line: str) -> list[AgentEvent]:
        try:
            rec = json.loads(line)
        except ValueError:
            self.corrupt_lines += 1
            return []
        if isinstance(rec.get("uuid"), str):
            self._by_uuid[rec["uuid"]] = rec
        out = []
        content = (rec.get("message") or {}).get("content")
        if rec.get("type") == "user" and isinstance(content, str) and "promptSource" in rec:
            out.append(AgentEvent(AgentEventKind.PROMPT_RECORDED, parse_envelope(content), content))
        if rec.get("type") == "system" and rec.get("subtype") == "turn_duration":
            self._pending.append(rec)
        for end in list(self._pending):
            resolved = self._resolve(end)
            if resolved is not None:
                self._pending.remove(end)
                out.append(resolved)
        return out

    def _resolve(self, end: dict[str, Any]) -> AgentEvent | None:
        answer: str | None = None
        error = False
        node = end
        while True:
            parent = self._by_uuid.get(node.get("parentUuid") or "")
            if parent is None:
                return None  # a line of the chain is not written yet
            content = (parent.get("message") or {}).get("content")
            if parent.get("type") == "assistant" and answer is None and isinstance(content, list):
                answer = "".join(b.get("text", "") for b in content if b.get("type") == "text")
                error = bool(parent.get("isApiErrorMessage"))
            if parent.get("type") == "user" and isinstance(content, str):
                kind = AgentEventKind.API_ERROR if error else AgentEventKind.TURN_COMPLETED
                return AgentEvent(kind, parse_envelope(content), answer or "")
            node = parent


def _new_parser(profile: RuntimeProfile) -> TranscriptParser:
    try:
        return profile.new_parser()
    except ImportError:  # helper 3's Claude parser not landed yet
        return _InterimClaudeParser()


class TranscriptReader:
    """Polls one transcript file from a byte offset and feeds whole lines to the parser."""

    def __init__(self, profile: RuntimeProfile, spec: LaunchSpec) -> None:
        self.profile, self.spec = profile, spec
        self.parser: TranscriptParser = _new_parser(profile)
        self.events: list[AgentEvent] = []
        self.path: Path | None = None
        self._offset = 0
        self._partial = b""

    def pump(self, pane_pid: int | None) -> list[AgentEvent]:
        """Read what is new; return all events so far."""
        if self.path is None or not self.path.exists():
            self.path = self.profile.transcript_path(self.spec, pane_pid)
        if self.path is None or not self.path.exists():
            return self.events
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self.events += self.parser.feed(line.decode("utf-8", errors="replace"))
        return self.events

    def find(self, kind: AgentEventKind, message_id: int) -> AgentEvent | None:
        """The first event of ``kind`` whose envelope names ``message_id``."""
        return next(
            (
                e
                for e in self.events
                if e.kind is kind and e.envelope is not None and e.envelope.message_id == message_id
            ),
            None,
        )


def _save_capture(directory: Path, name: str, transcript: Path, screen: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(transcript, directory / f"{name}.jsonl")
    (directory / f"{name}-screen.txt").write_text(screen)


async def _run_session(
    profile: RuntimeProfile,
    agent: AgentConfig,
    tmp_path: Path,
    tmux: TmuxServer,
    mock: MockModelServer,
) -> list[dict[str, float]]:
    """Start the CLI, inject every body, check each turn; return per-message timings (ms)."""
    spec = profile.prepare(agent, tmp_path / "state", resume=False)
    started = time.monotonic()
    pane = await tmux.new_session(profile.name.replace("-", ""), spec.argv, spec.env, spec.cwd)
    pid = await tmux.pane_pid(pane)

    async def ready() -> bool:
        """READY with an empty box on two reads 0.5 s apart (the CLIs redraw while starting)."""
        for attempt in range(2):
            state = profile.screen_state(await tmux.capture(pane))
            if state.kind is not ScreenKind.READY or state.input_text != "":
                return False
            if attempt == 0:
                await asyncio.sleep(0.5)
        return True

    await async_wait_until(ready, timeout=45, interval=0.1, what=f"{profile.name} ready")
    ready_ms = (time.monotonic() - started) * 1000
    reader = TranscriptReader(profile, spec)
    injector = Injector(tmux, pane, lambda screen: profile.screen_state(screen).input_text)
    timings: list[dict[str, float]] = []
    try:
        for n, body in enumerate(BODIES, start=1):
            prompt = wrap(Envelope(n, 1, "local", "alice"), body)

            async def accepted(n: int = n) -> bool:
                reader.pump(pid)
                return reader.find(AgentEventKind.PROMPT_RECORDED, n) is not None

            t0 = time.monotonic()
            result = await injector.inject(prompt, accepted)
            if result.outcome is not InjectionOutcome.ACCEPTED:
                pytest.fail(f"message {n}: {result}\n{await tmux.capture(pane)}")
            recorded_ms = (time.monotonic() - t0) * 1000

            async def completed(n: int = n) -> AgentEvent | None:
                reader.pump(pid)
                return reader.find(AgentEventKind.TURN_COMPLETED, n)

            end = await async_wait_until(completed, timeout=30, what=f"turn end of message {n}")
            record = reader.find(AgentEventKind.PROMPT_RECORDED, n)
            assert record is not None and record.envelope == Envelope(n, 1, "local", "alice")
            assert record.text.strip() == sanitize_text(prompt).strip()
            assert end.text == answer_for(record.text), (n, end.text)
            timings.append(
                {
                    "enter_presses": result.enter_presses,
                    "visible_ms": result.timings.get("visible", -1),
                    "accepted_ms": round(recorded_ms),
                    "completed_ms": round((time.monotonic() - t0) * 1000),
                }
            )
        # An API error ends a turn too, with the envelope of its prompt.
        n = len(BODIES) + 1
        mock.fail_next(50, 429, retryable=False)
        prompt = wrap(Envelope(n, 1, "local", "alice"), "this one meets a 429")

        async def accepted_err() -> bool:
            reader.pump(pid)
            return reader.find(AgentEventKind.PROMPT_RECORDED, n) is not None

        result = await injector.inject(prompt, accepted_err)
        assert result.outcome is InjectionOutcome.ACCEPTED, result

        async def errored() -> AgentEvent | None:
            reader.pump(pid)
            return reader.find(AgentEventKind.API_ERROR, n)

        await async_wait_until(errored, timeout=60, what="API error event")
        mock.clear_failures()
        assert reader.find(AgentEventKind.TURN_COMPLETED, n) is None
        screen = await tmux.capture(pane)
        assert profile.screen_state(screen).kind is ScreenKind.RATE_LIMITED, screen
        assert reader.parser.corrupt_lines == 0
        refused = sorted({r.host for r in mock.requests if r.refused})
        print(f"\n{profile.name}: refused outbound hosts: {refused}")
    finally:
        capture = os.environ.get("AGENTBRIDGE_CAPTURE_DIR")
        if capture and reader.path is not None:
            _save_capture(Path(capture), profile.name, reader.path, await tmux.capture(pane))
    print(f"\n{profile.name}: ready after {ready_ms:.0f} ms; per message: {timings}")
    return timings


async def test_claude_code_end_to_end(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    proxy = mock_model.base_url
    agent = AgentConfig(
        name="claude",
        runtime="claude-code",
        command=[str(agent_clis.claude)],
        cwd=tmp_path / "work",
        env={
            "HOME": str(tmp_path / "home"),
            "ANTHROPIC_BASE_URL": mock_model.base_url,
            "ANTHROPIC_AUTH_TOKEN": "sk-test",
            "HTTPS_PROXY": proxy,
            "HTTP_PROXY": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )
    await _run_session(ClaudeCodeProfile(), agent, tmp_path, tmux_server, mock_model)
    assert any("/v1/messages" in r.path for r in mock_model.requests)


CODEX_CONFIG = """\
model = "mock-model"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.mock]
name = "mock"
base_url = "{base}/v1"
env_key = "MOCK_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


async def test_codex_end_to_end(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    codex_home = tmp_path / "home" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=mock_model.base_url))
    proxy = mock_model.base_url
    agent = AgentConfig(
        name="codex",
        runtime="codex",
        command=[str(agent_clis.codex)],
        cwd=tmp_path / "work",
        env={
            "HOME": str(tmp_path / "home"),
            "CODEX_HOME": str(codex_home),
            "MOCK_API_KEY": "sk-test",
            "HTTPS_PROXY": proxy,
            "HTTP_PROXY": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )
    await _run_session(CodexProfile(), agent, tmp_path, tmux_server, mock_model)
    assert any(r.path.endswith("/v1/responses") for r in mock_model.requests)
