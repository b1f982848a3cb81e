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
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from agentbridge.agent.injector import InjectionOutcome, Injector
from agentbridge.agent.tmux import TmuxServer
from agentbridge.config import AgentConfig
from agentbridge.envelope import Envelope, wrap
from agentbridge.events import AgentEvent, AgentEventKind, TranscriptParser
from agentbridge.hook_relay import normalize
from agentbridge.plugin.protocols import LaunchSpec, PromptLearner, RuntimeProfile, ScreenKind
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile
from agentbridge.sanitize import sanitize_text
from agentbridge.testing import async_wait_until
from agentbridge.testing.mock_model import MockModelServer, answer_for
from agentbridge.testing.realcli import CODEX_CONFIG

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


def _new_parser(profile: RuntimeProfile) -> TranscriptParser:
    """The profile's own parser: what the bridge uses (chain-aware for Claude's first flush)."""
    return profile.new_parser()


class TranscriptReader:
    """Polls one transcript file from a byte offset and feeds whole lines to the parser."""

    def __init__(self, profile: RuntimeProfile, spec: LaunchSpec, hooks: bool = False) -> None:
        self.profile, self.spec, self.hooks = profile, spec, hooks
        hook_parser = profile.new_hook_parser() if hooks else None
        self.parser: TranscriptParser | Any = hook_parser if hooks else _new_parser(profile)
        self.events: list[AgentEvent] = []
        self.path: Path | None = None
        self._offset = 0
        self._partial = b""
        #: the hook reader this transcript teaches its prompts (what the host does: Claude's
        #: relay has no UserPromptSubmit hook, a Stop names its prompt by id only)
        self.teaches: TranscriptReader | None = None

    def pump(self, pane_pid: int | None) -> list[AgentEvent]:
        """Read what is new; return all events so far."""
        if self.path is None or not self.path.exists():
            self.path = (
                self.spec.hook_events
                if self.hooks
                else self.profile.transcript_path(self.spec, pane_pid)
            )
        if self.path is None or not self.path.exists():
            return self.events
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            if self.hooks:
                record = normalize(json.loads(line)) if line.strip() else None
                self.events += self.parser.feed(record) if record is not None else []
            else:
                events = self.parser.feed(line)
                self.events += events
                pupil = self.teaches
                if pupil is not None and isinstance(pupil.parser, PromptLearner):
                    pupil.events += [h for e in events for h in pupil.parser.learn(e)]
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


class Session:
    """One CLI in one tmux pane, with its transcript reader and injector."""

    def __init__(
        self, profile: RuntimeProfile, spec: LaunchSpec, tmux: TmuxServer, name: str = ""
    ) -> None:
        self.profile, self.spec, self.tmux = profile, spec, tmux
        self.name = name or profile.name.replace("-", "")
        self.reader = TranscriptReader(profile, spec)
        self.hooks = TranscriptReader(profile, spec, hooks=True)
        self.reader.teaches = self.hooks
        self.pane = ""
        self.pid: int | None = None
        self.ready_ms = 0.0

    async def start(self) -> None:
        """Launch and wait for READY with an empty box on two reads 0.5 s apart (the CLIs
        redraw while starting)."""
        started = time.monotonic()
        spec = self.spec
        self.pane = await self.tmux.new_session(self.name, spec.argv, spec.env, spec.cwd)
        self.pid = await self.tmux.pane_pid(self.pane)

        async def ready() -> bool:
            for attempt in range(2):
                state = self.profile.screen_state(await self.tmux.capture(self.pane))
                if state.kind is not ScreenKind.READY or state.input_text != "":
                    return False
                if attempt == 0:
                    await asyncio.sleep(0.5)
            return True

        await async_wait_until(ready, timeout=45, interval=0.1, what=f"{self.name} ready")
        self.ready_ms = (time.monotonic() - started) * 1000

    async def send(self, n: int, body: str) -> dict[str, float]:
        """Inject message ``n``; check PROMPT_RECORDED (envelope, text) and TURN_COMPLETED
        (exactly the mock's answer); return timings in ms from the start of the injection."""
        reader, prompt = self.reader, wrap(Envelope(n, 1, "local", "alice"), body)
        injector = Injector(
            self.tmux, self.pane, lambda sc: self.profile.screen_state(sc).input_text
        )

        async def accepted() -> bool:
            reader.pump(self.pid)
            return reader.find(AgentEventKind.PROMPT_RECORDED, n) is not None

        async def completed() -> AgentEvent | None:
            reader.pump(self.pid)
            return reader.find(AgentEventKind.TURN_COMPLETED, n)

        t0 = time.monotonic()
        result = await injector.inject(prompt, accepted)
        if result.outcome is not InjectionOutcome.ACCEPTED:
            pytest.fail(f"message {n}: {result}\n{await self.tmux.capture(self.pane)}")
        accepted_ms = (time.monotonic() - t0) * 1000
        end = await async_wait_until(completed, timeout=30, what=f"turn end of message {n}")
        completed_ms = (time.monotonic() - t0) * 1000
        record = reader.find(AgentEventKind.PROMPT_RECORDED, n)
        assert record is not None and record.envelope == Envelope(n, 1, "local", "alice")
        assert record.text.strip() == sanitize_text(prompt).strip()
        assert end.text == answer_for(record.text), (n, end.text)

        async def hook_end() -> AgentEvent | None:  # the same turn end, from the Stop hook
            self.hooks.pump(self.pid)
            return self.hooks.find(AgentEventKind.TURN_COMPLETED, n)

        hooked = await async_wait_until(hook_end, timeout=5, what=f"Stop hook of message {n}")
        assert hooked.text == end.text
        hook_ms = (time.monotonic() - t0) * 1000
        if isinstance(self.profile, ClaudeCodeProfile):  # <config>/sessions/<pid>.json

            async def idle() -> bool:
                return self.profile.agent_status(self.spec, self.pid) == "idle"

            await async_wait_until(idle, timeout=5, what="sessions/<pid>.json status idle")
        return {
            "enter_presses": result.enter_presses,
            "visible_ms": result.timings.get("visible", -1),
            "accepted_ms": round(accepted_ms),
            "completed_ms": round(completed_ms),
            "hook_ms": round(hook_ms),
        }

    async def send_error(self, n: int, mock: MockModelServer) -> None:
        """A 429 ends the turn as API_ERROR (no TURN_COMPLETED) and shows as RATE_LIMITED."""
        reader, prompt = self.reader, wrap(Envelope(n, 1, "local", "alice"), "this one meets a 429")
        injector = Injector(
            self.tmux, self.pane, lambda sc: self.profile.screen_state(sc).input_text
        )
        mock.fail_next(50, 429, retryable=False)

        async def accepted() -> bool:
            reader.pump(self.pid)
            return reader.find(AgentEventKind.PROMPT_RECORDED, n) is not None

        async def errored() -> AgentEvent | None:
            reader.pump(self.pid)
            return reader.find(AgentEventKind.API_ERROR, n)

        result = await injector.inject(prompt, accepted)
        assert result.outcome is InjectionOutcome.ACCEPTED, result
        await async_wait_until(errored, timeout=60, what="API error event")
        mock.clear_failures()
        assert reader.find(AgentEventKind.TURN_COMPLETED, n) is None

        async def limited() -> bool:  # the screen may lag the transcript a little
            screen = await self.tmux.capture(self.pane)
            return self.profile.screen_state(screen).kind is ScreenKind.RATE_LIMITED

        await async_wait_until(limited, timeout=5, what="a RATE_LIMITED screen")

    async def stop(self) -> None:
        """Save a capture when asked (``AGENTBRIDGE_CAPTURE_DIR``), then kill the session."""
        capture = os.environ.get("AGENTBRIDGE_CAPTURE_DIR")
        if capture and self.reader.path is not None and self.pane:
            screen = await self.tmux.capture(self.pane)
            _save_capture(Path(capture), self.profile.name, self.reader.path, screen)
        await self.tmux.kill_session(self.name)


async def _run_session(
    profile: RuntimeProfile,
    agent: AgentConfig,
    tmp_path: Path,
    tmux: TmuxServer,
    mock: MockModelServer,
) -> None:
    """Every body of BODIES, then a 429; prints the timings."""
    session = Session(profile, profile.prepare(agent, tmp_path / "state", resume=False), tmux)
    await session.start()
    try:
        timings = [await session.send(n, body) for n, body in enumerate(BODIES, start=1)]
        await session.send_error(len(BODIES) + 1, mock)
        assert session.reader.parser.corrupt_lines == 0
    finally:
        await session.stop()
    refused = sorted({r.host for r in mock.requests if r.refused})
    print(f"\n{profile.name}: ready after {session.ready_ms:.0f} ms; refused hosts {refused}")
    for key in ("visible_ms", "accepted_ms", "completed_ms", "hook_ms"):
        values = sorted(t[key] for t in timings)
        low, mid, high = values[0], values[len(values) // 2], values[-1]
        print(f"  {key}: min {low:.0f} median {mid:.0f} max {high:.0f}")
    print(f"  enter presses: {sorted({t['enter_presses'] for t in timings})}")


async def _run_resume(
    profile: RuntimeProfile,
    agent: AgentConfig,
    tmp_path: Path,
    tmux: TmuxServer,
    mock: MockModelServer,
) -> LaunchSpec:
    """A message, a restart with ``resume=True``, another message: same transcript file, and
    the model sees the first message again (the conversation really continued)."""
    first = Session(profile, profile.prepare(agent, tmp_path / "state", resume=True), tmux)
    await first.start()
    try:
        await first.send(1, "remember the word pineapple")
    finally:
        await first.stop()
    path = first.reader.path
    spec = profile.prepare(agent, tmp_path / "state", resume=True)
    second = Session(profile, spec, tmux)
    await second.start()
    await second.send(2, "which word did I ask you to remember?")
    await second.stop()
    assert second.reader.path == path
    # (Codex also sends each prompt alone to its hidden title thread: look at them all.)
    second_turn = [r for r in mock.requests if r.answer and "message=2 " in r.user_text]
    assert any("pineapple" in json.dumps(r.body) for r in second_turn)
    return spec


def _claude_agent(clis: AgentClis, mock: MockModelServer, tmp_path: Path) -> AgentConfig:
    """Claude Code with HOME in tmp, the mock as its API and as its only proxy."""
    return AgentConfig(
        name="claude",
        runtime="claude-code",
        command=[str(clis.claude)],
        cwd=tmp_path / "work",
        env={
            "HOME": str(tmp_path / "home"),
            "ANTHROPIC_BASE_URL": mock.base_url,
            "ANTHROPIC_AUTH_TOKEN": "sk-test",
            "HTTPS_PROXY": mock.base_url,
            "HTTP_PROXY": mock.base_url,
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )


def _codex_agent(clis: AgentClis, mock: MockModelServer, tmp_path: Path) -> AgentConfig:
    """Codex with CODEX_HOME in tmp holding the user's part of config.toml (the mock provider)."""
    codex_home = tmp_path / "home" / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=mock.base_url))
    return AgentConfig(
        name="codex",
        runtime="codex",
        command=[str(clis.codex)],
        cwd=tmp_path / "work",
        env={
            "HOME": str(tmp_path / "home"),
            "CODEX_HOME": str(codex_home),
            "MOCK_API_KEY": "sk-test",
            "HTTPS_PROXY": mock.base_url,
            "HTTP_PROXY": mock.base_url,
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )


#: the one request Codex 0.169.0 still makes (its start-up tips file): refused by the mock
CODEX_ALLOWED_REFUSALS = {"raw.githubusercontent.com"}


async def test_claude_code_end_to_end(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    agent = _claude_agent(agent_clis, mock_model, tmp_path)
    await _run_session(ClaudeCodeProfile(), agent, tmp_path, tmux_server, mock_model)
    assert any("/v1/messages" in r.path for r in mock_model.requests)
    assert not [r.host for r in mock_model.requests if r.refused]


async def test_codex_end_to_end(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    agent = _codex_agent(agent_clis, mock_model, tmp_path)
    await _run_session(CodexProfile(), agent, tmp_path, tmux_server, mock_model)
    assert any(r.path.endswith("/v1/responses") for r in mock_model.requests)
    assert {r.host for r in mock_model.requests if r.refused} <= CODEX_ALLOWED_REFUSALS


async def test_claude_code_resumes_after_restart(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    agent = _claude_agent(agent_clis, mock_model, tmp_path)
    spec = await _run_resume(ClaudeCodeProfile(), agent, tmp_path, tmux_server, mock_model)
    assert spec.argv[-2:] == ["--resume", spec.session_id]


async def test_codex_resumes_after_restart(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    agent = _codex_agent(agent_clis, mock_model, tmp_path)
    spec = await _run_resume(CodexProfile(), agent, tmp_path, tmux_server, mock_model)
    assert spec.session_id is not None and spec.argv[-2:] == ["resume", spec.session_id]


# --------------------------------------------------------------------------- a shared config dir

#: a hook of the user's own, in the shared settings.json / hooks.json: it must keep firing
USER_HOOK_LOG = "user-hooks.jsonl"


def _user_hook(log: Path) -> dict[str, Any]:
    return {"hooks": [{"type": "command", "command": f"cat >> '{log}'; echo >> '{log}'"}]}


def _old_relay(log: Path) -> dict[str, Any]:
    """An entry an older agentbridge merged into the user's file (to be cleaned up)."""
    command = f"{{ tr -d '\\n'; echo; }} >> '{log}' # agentbridge.hook_relay"
    return {"hooks": [{"type": "command", "command": command}]}


def _hook_records(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        record = normalize(json.loads(line)) if line.strip() else None
        if record is not None and isinstance(record["payload"], dict):
            out.append(record["payload"])
    return out


async def _two_agents_one_config_dir(
    profile: RuntimeProfile, agent: AgentConfig, tmp_path: Path, tmux: TmuxServer
) -> tuple[list[Session], Path]:
    """Two agents of one account (one config dir), two projects: each message's hooks reach
    its own agent's relay file only, and the user's own hook fires for both. Returns the
    sessions (stopped) and the user's hook log."""
    user_log = tmp_path / USER_HOOK_LOG
    sessions = []
    for name in ("alpha", "beta"):
        each = dataclasses.replace(agent, name=name, cwd=tmp_path / f"work-{name}")
        spec = profile.prepare(each, tmp_path / f"state-{name}", resume=False)
        sessions.append(Session(profile, spec, tmux, name=f"{profile.name[:5]}{name}"))
    try:
        for session in sessions:  # both prepared before either starts: the old clobbering case
            await session.start()
        for n, session in enumerate(sessions, start=1):
            await session.send(n, f"hello from agent {n}")  # asserts its own Stop hook
        for session in sessions:
            ours = _hook_records(session.spec.hook_events)
            assert {r["cwd"] for r in ours} == {str(session.spec.cwd)}, ours
            assert any(r.get("hook_event_name") == "Stop" for r in ours)

        async def user_hooks_fired() -> bool:
            cwds = {r["cwd"] for r in _hook_records(user_log) if r["hook_event_name"] == "Stop"}
            return cwds == {str(s.spec.cwd) for s in sessions}

        await async_wait_until(user_hooks_fired, timeout=5, what="the user's Stop hook, twice")
    finally:
        for session in sessions:
            await session.stop()
    return sessions, user_log


async def test_claude_code_agents_share_a_config_dir(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    """Measured: ``--settings`` hooks fire, and the user's settings.json hooks fire alongside."""
    settings = tmp_path / "home" / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    user_hook = _user_hook(tmp_path / USER_HOOK_LOG)
    old_log = tmp_path / "old-relay.jsonl"
    settings.write_text(
        json.dumps({"hooks": {"Stop": [user_hook, _old_relay(old_log)]}, "theme": "dark"})
    )
    agent = _claude_agent(agent_clis, mock_model, tmp_path)
    await _two_agents_one_config_dir(ClaudeCodeProfile(), agent, tmp_path, tmux_server)
    assert json.loads(settings.read_text()) == {"hooks": {"Stop": [user_hook]}, "theme": "dark"}
    assert not old_log.exists()


async def test_codex_agents_share_a_codex_home(
    agent_clis: AgentClis, mock_model: MockModelServer, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    """Measured: ``-c hooks.<Event>=…`` hooks fire, and the user's hooks.json fires alongside."""
    agent = _codex_agent(agent_clis, mock_model, tmp_path)
    hooks_json = Path(agent.env["CODEX_HOME"]) / "hooks.json"
    user_hook = _user_hook(tmp_path / USER_HOOK_LOG)
    old_log = tmp_path / "old-relay.jsonl"
    hooks_json.write_text(json.dumps({"hooks": {"Stop": [user_hook, _old_relay(old_log)]}}))
    await _two_agents_one_config_dir(CodexProfile(), agent, tmp_path, tmux_server)
    assert json.loads(hooks_json.read_text()) == {"hooks": {"Stop": [user_hook]}}
    assert not old_log.exists()
