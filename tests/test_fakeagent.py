"""The fake agent, driven in a real tmux server exactly the way the bridge drives Claude Code."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtmux
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentbridge.fakeagent.inputbox import InputBox
from agentbridge.fakeagent.keys import InputParser, KeyEvent, KeyKind
from agentbridge.fakeagent.options import config_dir
from agentbridge.fakeagent.prompt import env_faults, parse_faults, reply_text
from agentbridge.fakeagent.transcript_writer import project_dir_name
from agentbridge.testing import WaitTimeout, wait_until

PROMPT = "❯\u00a0"
ENVELOPE = "[agentbridge message=7 attempt=1 channel=local sender=alice]"


@dataclass
class Agent:
    """One fake agent in its own pane, with helpers to drive and observe it."""

    server: libtmux.Server
    socket: str
    pane: str
    home: Path
    cwd: Path
    byte_log: Path
    hook_log: Path
    session_id: str

    @property
    def config(self) -> Path:
        return self.home / ".claude"

    def tmux(self, *args: str, data: bytes | None = None) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], input=data, capture_output=True, check=True
        )
        return out.stdout.decode("utf-8", "replace")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.pane)

    def box(self) -> str | None:
        """Text on the ❯ input line, or None when it is not drawn."""
        for line in reversed(self.screen().splitlines()):
            if line.startswith(PROMPT):
                return line[len(PROMPT) :].rstrip()
        return None

    def paste(self, text: str | bytes, then: tuple[str, ...] = ()) -> None:
        data = text.encode() if isinstance(text, str) else text
        name = f"b{uuid.uuid4().hex[:8]}"
        self.tmux("load-buffer", "-b", name, "-", data=data)
        self.tmux("paste-buffer", "-p", "-d", "-b", name, "-t", self.pane, *then)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.pane, *keys)

    def submit(self, text: str, visible: str | None = None) -> None:
        """The bridge's way: paste, wait until visible on the ❯ line, then Enter."""
        self.paste(text)
        shown = visible if visible is not None else text.split("\n", 1)[0]
        wait_until(lambda: shown in (self.box() or ""), 5, what=f"{shown!r} in the box")
        self.enter_until_accepted(shown)

    def enter_until_accepted(self, shown: str) -> None:
        """Enter, then verify the box emptied; re-send like the injector does."""
        for _ in range(5):  # an Enter may be swallowed (``#fake:swallow``): verify, re-send
            self.keys("Enter")
            try:
                wait_until(lambda: shown not in (self.box() or ""), 0.4, what="box emptied")
                return
            except WaitTimeout:
                continue
        raise WaitTimeout(f"{shown!r} never submitted")

    def transcript(self, session_id: str | None = None) -> Path:
        project = project_dir_name(str(self.cwd))
        return self.config / "projects" / project / f"{session_id or self.session_id}.jsonl"

    def lines(self, session_id: str | None = None) -> list[dict[str, Any]]:
        path = self.transcript(session_id)
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines()]

    def wait_lines(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            lines = self.lines()
            return lines if len(lines) >= count else None

        lines = wait_until(enough, timeout, what=f"{count} transcript lines")
        assert lines is not None
        return lines

    def hooks(self) -> list[dict[str, Any]]:
        if not self.hook_log.exists():
            return []
        return [json.loads(x) for x in self.hook_log.read_text().splitlines() if x.strip()]

    def hook_events(self) -> list[str]:
        return [h["hook_event_name"] for h in self.hooks()]

    def pid(self) -> int:
        return int(self.tmux("display", "-p", "-t", self.pane, "#{pane_pid}"))

    def status(self) -> str | None:
        path = self.config / "sessions" / f"{self.pid()}.json"
        try:
            return str(json.loads(path.read_text())["status"])
        except (OSError, ValueError):
            return None

    def dead_status(self) -> int | None:
        """The agent's exit code once it has exited, else None."""
        fields = self.tmux(
            "display", "-p", "-t", self.pane, "#{pane_dead} #{pane_dead_status}"
        ).split()
        if fields[0] != "1":
            return None
        if len(fields) > 1:
            return int(fields[1])
        # tmux 3.3a sometimes marks the pane dead (pty EOF) but leaves the child unreaped for a
        # long time; a zombie's exit code is still readable from /proc/<pid>/stat (field 52)
        try:
            stat = Path(f"/proc/{self.pid()}/stat").read_text()
        except OSError:
            return None
        rest = stat.rsplit(")", 1)[1].split()
        if rest[0] != "Z" or len(rest) < 50:
            return None
        return (int(rest[-1]) >> 8) & 0xFF


StartAgent = Callable[..., Agent]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[StartAgent]:
    """Factory: start a fake agent in a pane of a private tmux server (killed at teardown)."""
    servers: list[libtmux.Server] = []

    def start(
        env: dict[str, str] | None = None,
        hooks: tuple[str, ...] = (),
        reply_delay: float = 0.05,
        extra: tuple[str, ...] = (),
    ) -> Agent:
        socket = f"abtest-{uuid.uuid4().hex[:12]}"
        server = libtmux.Server(socket_name=socket)
        servers.append(server)
        home = tmp_path / "home"
        cwd = tmp_path / "work"
        home.mkdir(exist_ok=True)
        cwd.mkdir(exist_ok=True)
        hook_log = tmp_path / "hooks.jsonl"
        if hooks:
            (home / ".claude").mkdir(exist_ok=True)
            command = f"cat >> {shlex.quote(str(hook_log))}; echo >> {shlex.quote(str(hook_log))}"
            settings_json = {
                "hooks": {e: [{"hooks": [{"type": "command", "command": command}]}] for e in hooks}
            }
            (home / ".claude" / "settings.json").write_text(json.dumps(settings_json))
        session_id = str(uuid.uuid4())
        byte_log = tmp_path / "bytes.log"
        full_env = {
            "HOME": str(home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TERM": "screen-256color",
            **(env or {}),
        }
        argv = [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in full_env.items()),
            sys.executable,
            "-m",
            "agentbridge.fakeagent",
            "--session-id",
            session_id,
            "--byte-log",
            str(byte_log),
            "--reply-delay",
            str(reply_delay),
            *extra,
        ]
        agent = Agent(server, socket, "", home, cwd, byte_log, hook_log, session_id)
        pane = agent.tmux(
            "new-session",
            "-d",
            "-P",
            "-F",
            "#{pane_id}",
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            str(cwd),
            shlex.join(argv),
            ";",
            "set-option",
            "-wg",
            "remain-on-exit",
            "on",
        ).strip()
        agent.pane = pane
        wait_until(lambda: agent.box() == "", 10, what="the fake agent's ❯ line")
        return agent

    yield start
    for server in servers:
        with contextlib.suppress(Exception):  # already gone
            server.kill()


# ----- through tmux ------------------------------------------------------------------------


def test_prompt_roundtrip_in_claude_format(start_agent: StartAgent) -> None:
    agent = start_agent()
    assert agent.status() == "idle"
    counts: set[int] = set()

    def done() -> bool:
        counts.add(len(agent.lines()))
        return len(agent.lines()) >= 3

    agent.submit(f"{ENVELOPE}\nhi there", visible="[agentbridge message=7")
    wait_until(done, 5, interval=0.002, what="turn end")
    assert counts <= {0, 3}, "user line and turn end must land in one flush"
    user, assistant, end = agent.lines()
    assert user["type"] == "user"
    assert user["message"] == {"role": "user", "content": f"{ENVELOPE}\nhi there"}
    assert user["promptSource"] == "typed" and user["origin"] == {"kind": "human"}
    assert user["promptId"] and user["parentUuid"] is None
    assert assistant["message"]["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert assistant["message"]["stop_reason"] == "end_turn"
    assert assistant["parentUuid"] == user["uuid"] and end["parentUuid"] == assistant["uuid"]
    assert end["type"] == "system" and end["subtype"] == "turn_duration"
    assert isinstance(end["durationMs"], int)
    for line in (user, assistant, end):
        assert line["sessionId"] == agent.session_id and line["cwd"] == str(agent.cwd)
        assert line["timestamp"].endswith("Z")
    wait_until(lambda: "⏺ echo: hi there" in agent.screen(), 5)
    assert agent.box() == ""


def test_enter_right_after_paste_is_swallowed(start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.paste("swallow me", then=(";", "send-keys", "-t", agent.pane, "Enter"))
    wait_until(lambda: agent.byte_log.read_bytes().endswith(b"\x1b[201~\r"), 5)
    agent.keys("-l", "Z")  # processed after the Enter: once Z shows, the Enter was handled
    wait_until(lambda: agent.box() == "swallow meZ", 5)
    assert agent.lines() == []
    agent.keys("BSpace")
    wait_until(lambda: agent.box() == "swallow me", 5)
    agent.enter_until_accepted("swallow me")
    lines = agent.wait_lines(3)
    assert lines[0]["message"]["content"] == "swallow me"


def test_enter_once_the_paste_shows_is_taken_first_time(start_agent: StartAgent) -> None:
    # As measured on Claude Code 2.1.197: once the pasted text is drawn, one Enter submits it
    # (the old model swallowed any Enter < 100 ms after the paste, visible or not).
    agent = start_agent()
    for i in range(3):
        agent.paste(f"at once {i}")
        wait_until(lambda i=i: agent.box() == f"at once {i}", 5)
        agent.keys("Enter")
        lines = agent.wait_lines(3 * (i + 1))
        assert lines[3 * i]["message"]["content"] == f"at once {i}"
    assert agent.byte_log.read_bytes().count(b"\r") == 3  # one Enter each


def test_enter_before_a_slow_paste_shows_is_swallowed(start_agent: StartAgent) -> None:
    agent = start_agent(extra=("--paste-delay", "1.5"))
    agent.paste("slow paste")
    wait_until(lambda: agent.byte_log.read_bytes().endswith(b"\x1b[201~"), 5)
    agent.keys("Enter")
    agent.keys("-l", "Z")  # typed after the paste: it lands after it, once the paste is in
    wait_until(lambda: agent.box() == "slow pasteZ", 5)
    assert agent.lines() == []  # the Enter went nowhere
    agent.keys("Enter")
    assert agent.wait_lines(3)[0]["message"]["content"] == "slow pasteZ"


def test_swallow_directive_loses_that_many_enters(start_agent: StartAgent) -> None:
    agent = start_agent()
    text = "lose two #fake:swallow=2"
    agent.paste(text)
    wait_until(lambda: agent.box() == text, 5)
    for presses in (1, 2):
        agent.keys("Enter")
        wait_until(lambda p=presses: agent.byte_log.read_bytes().count(b"\r") == p, 5)
    agent.keys("-l", "!")  # processed after both Enters
    wait_until(lambda: agent.box() == text + "!", 5)
    assert agent.lines() == []
    agent.keys("Enter")
    assert agent.wait_lines(3)[0]["message"]["content"] == text + "!"
    assert agent.byte_log.read_bytes().count(b"\x1b[200~") == 1


def test_multiline_paste_is_one_prompt_with_placeholder(start_agent: StartAgent) -> None:
    agent = start_agent()
    text = "\n".join(f"line {i} " + "x" * 500 for i in range(5))
    agent.submit(text, visible="[Pasted text #1 +4 lines]")
    lines = agent.wait_lines(3)
    assert [x["type"] for x in lines] == ["user", "assistant", "system"]
    assert lines[0]["message"]["content"] == text
    reply = lines[1]["message"]["content"][0]["text"]
    assert reply == f"echo: {text[:200]} … ({len(text)} chars)"
    agent.submit("a\nb")  # a short multi-line paste stays text, one prompt
    lines = agent.wait_lines(6)
    assert lines[3]["message"]["content"] == "a\nb"
    assert lines[4]["message"]["content"][0]["text"] == "echo: a\nb"


def test_byte_log_and_garbage_input(start_agent: StartAgent) -> None:
    agent = start_agent()
    raw = b"ok \xff\xfe caf\xc3\xa9 \x1b[A\x07 two\nlines"
    agent.paste(raw)
    expected = b"\x1b[200~" + raw.replace(b"\n", b"\r") + b"\x1b[201~"
    wait_until(lambda: agent.byte_log.read_bytes() == expected, 5, what="exact bytes")
    wait_until(lambda: "ok" in (agent.box() or ""), 5)
    agent.keys("-l", "\x1b[Z\x01\x1bOP")  # stray escapes and controls typed: ignored
    agent.enter_until_accepted("ok")
    lines = agent.wait_lines(3)
    assert lines[0]["message"]["content"] == "ok \ufffd\ufffd café \x1b[A\x07 two\nlines"
    assert agent.dead_status() is None


def test_typing_backspace_and_clear(start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.keys("-l", "hellp")
    wait_until(lambda: agent.box() == "hellp", 5)
    agent.keys("BSpace")
    agent.keys("-l", "o")
    wait_until(lambda: agent.box() == "hello", 5)
    agent.keys("C-u")
    wait_until(lambda: agent.box() == "", 5)
    agent.keys("-l", "typed")
    wait_until(lambda: agent.box() == "typed", 5)
    agent.keys("Enter")
    assert agent.wait_lines(3)[0]["message"]["content"] == "typed"


def test_prompt_sent_while_busy_is_queued_as_its_own_turn(start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.submit("first #fake:slow=0.8")
    wait_until(lambda: len(agent.lines()) == 1, 5, what="user line flushed first")
    assert agent.status() == "busy"
    agent.submit("second")
    wait_until(lambda: "Press up to edit queued messages" in agent.screen(), 5)
    lines = agent.wait_lines(6)
    kinds = [(x["type"], x.get("promptSource"), x.get("subtype")) for x in lines]
    assert kinds == [
        ("user", "typed", None),
        ("assistant", None, None),
        ("system", None, "turn_duration"),
        ("user", "queued", None),
        ("assistant", None, None),
        ("system", None, "turn_duration"),
    ]
    assert lines[0]["message"]["content"] == "first #fake:slow=0.8"
    assert lines[2]["durationMs"] >= 700
    assert lines[4]["message"]["content"][0]["text"] == "echo: second"
    wait_until(lambda: agent.status() == "idle", 5)


def test_hang_then_escape_interrupts(start_agent: StartAgent) -> None:
    agent = start_agent(hooks=("Stop", "UserPromptSubmit"))
    agent.submit("wait forever #fake:hang")
    agent.wait_lines(1)
    wait_until(lambda: "Working" in agent.screen(), 5)
    assert agent.status() == "busy"
    agent.keys("Escape")
    wait_until(lambda: agent.status() == "idle", 5)
    wait_until(lambda: agent.box() == "wait forever #fake:hang", 5, what="prompt back in box")
    lines = agent.lines()  # the user line, then Claude's interrupt marker: no turn end
    assert len(lines) == 2 and "[Request interrupted by user]" in json.dumps(lines[1])
    assert not any(line.get("subtype") == "turn_duration" for line in lines)
    assert agent.hook_events() == ["UserPromptSubmit"]
    agent.keys("C-u")
    wait_until(lambda: agent.box() == "", 5)


@pytest.mark.parametrize("how", ["prompt", "env"])
def test_crash_exits_3_after_user_line(start_agent: StartAgent, how: str) -> None:
    env = {"FAKE_AGENT_FAULT": "crash"} if how == "env" else {}
    agent = start_agent(env=env)
    agent.submit("boom #fake:crash" if how == "prompt" else "boom")
    wait_until(lambda: agent.dead_status() is not None, 5, what="pane died")
    assert agent.dead_status() == 3
    lines = agent.lines()
    assert [x["type"] for x in lines] == ["user"]


@pytest.mark.parametrize(
    ("fault", "screen_text", "error"),
    [
        ("ratelimit", "You've hit your limit · resets 4:10pm (UTC)", "rate_limit"),
        ("contextfull", "Context limit reached · /compact or /clear to continue", None),
        ("apierror", "API Error: 500 Internal server error", "server_error"),
    ],
)
def test_api_error_faults(
    start_agent: StartAgent, fault: str, screen_text: str, error: str | None
) -> None:
    agent = start_agent(env={"FAKE_AGENT_RESET": "4:10pm"}, hooks=("Stop", "StopFailure"))
    agent.submit(f"{ENVELOPE}\nplease #fake:{fault}", visible="[agentbridge")
    wait_until(lambda: screen_text in agent.screen(), 5, what=screen_text)
    lines = agent.wait_lines(2)
    assert [x["type"] for x in lines] == ["user", "assistant"]
    assert lines[1]["isApiErrorMessage"] is True
    assert lines[1]["message"]["content"][0]["text"] == screen_text
    wait_until(lambda: agent.hook_events() == ["StopFailure"], 5)
    payload = agent.hooks()[0]
    assert payload["session_id"] == agent.session_id
    if error:
        assert payload["error"] == error
    assert "echo:" not in agent.screen()
    wait_until(lambda: agent.status() == "idle", 5)


def test_permission_dialog_waits_for_a_key(start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.submit("do it #fake:permission")
    wait_until(lambda: "Do you want to proceed?" in agent.screen(), 5)
    screen = agent.screen()
    assert "❯ 1. Yes" in screen and "  2. No" in screen
    assert agent.status() == "waiting"
    assert len(agent.lines()) == 1
    agent.keys("1")
    lines = agent.wait_lines(3)
    assert lines[2]["subtype"] == "turn_duration"
    wait_until(lambda: agent.status() == "idle", 5)
    assert "Do you want to proceed?" not in agent.screen()
    assert agent.box() == ""


def test_hooks_fire_with_payloads(start_agent: StartAgent) -> None:
    agent = start_agent(hooks=("SessionStart", "UserPromptSubmit", "Stop", "StopFailure"))
    wait_until(lambda: agent.hook_events() == ["SessionStart"], 5)
    agent.submit("hello hooks")
    lines = agent.wait_lines(4)
    assert [x.get("subtype") for x in lines] == [None, None, "stop_hook_summary", "turn_duration"]
    wait_until(lambda: len(agent.hooks()) == 3, 5)
    start, submit, stop = agent.hooks()
    for payload in (start, submit, stop):
        assert payload["session_id"] == agent.session_id
        assert payload["transcript_path"] == str(agent.transcript())
        assert payload["cwd"] == str(agent.cwd)
    assert start["hook_event_name"] == "SessionStart" and start["source"] == "startup"
    assert start["model"]
    assert submit["hook_event_name"] == "UserPromptSubmit"
    assert submit["prompt"] == "hello hooks" and submit["prompt_id"] == lines[0]["promptId"]
    assert stop["hook_event_name"] == "Stop" and stop["prompt_id"] == lines[0]["promptId"]
    assert stop["stop_hook_active"] is False
    assert stop["last_assistant_message"] == "echo: hello hooks"


def test_settings_flag_hooks_merge_with_settings_json(
    start_agent: StartAgent, tmp_path: Path
) -> None:
    """As Claude Code 2.1.197 does (measured): ``--settings`` hooks run alongside settings.json
    hooks, and a command given in both runs once."""
    flag_log = tmp_path / "flag-hooks.jsonl"
    flag_command = f"cat >> {shlex.quote(str(flag_log))}; echo >> {shlex.quote(str(flag_log))}"
    user_log = tmp_path / "hooks.jsonl"
    shared = f"cat >> {shlex.quote(str(user_log))}; echo >> {shlex.quote(str(user_log))}"
    flag_settings = tmp_path / "agent-settings.json"
    flag_settings.write_text(
        json.dumps(
            {
                "hooks": {
                    "Stop": [{"hooks": [{"type": "command", "command": flag_command}]}],
                    "UserPromptSubmit": [
                        {"hooks": [{"type": "command", "command": flag_command}]},
                        {"hooks": [{"type": "command", "command": shared}]},  # also the user's
                    ],
                }
            }
        )
    )
    agent = start_agent(
        hooks=("UserPromptSubmit", "Stop"), extra=("--settings", str(flag_settings))
    )
    agent.submit("hello both")

    def events(path: Path) -> list[str]:
        if not path.exists():
            return []
        return [json.loads(x)["hook_event_name"] for x in path.read_text().splitlines() if x]

    wait_until(lambda: events(flag_log) == ["UserPromptSubmit", "Stop"], 5, what="flag hooks")
    wait_until(lambda: agent.hook_events() == ["UserPromptSubmit", "Stop"], 5, what="user hooks")
    lines = agent.wait_lines(4)
    summary = next(x for x in lines if x.get("subtype") == "stop_hook_summary")
    assert summary["hookCount"] == 2  # the user's Stop hook and the --settings one
    # the same settings as inline JSON text
    inline = json.dumps(
        {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": flag_command}]}]}}
    )
    flag_log.unlink()
    other = start_agent(extra=("--settings", inline))
    other.submit("inline json")
    wait_until(lambda: events(flag_log) == ["Stop"], 5, what="inline --settings hook")


def test_session_file_and_clean_exit_on_sigterm(start_agent: StartAgent) -> None:
    agent = start_agent()
    pid = agent.pid()
    path = agent.config / "sessions" / f"{pid}.json"
    record = json.loads(path.read_text())
    assert record["pid"] == pid and record["sessionId"] == agent.session_id
    assert record["cwd"] == str(agent.cwd) and record["status"] == "idle"
    agent.submit("slow #fake:slow=0.5")
    wait_until(lambda: agent.status() == "busy", 5)
    wait_until(lambda: agent.status() == "idle", 5)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: agent.dead_status() is not None, 5)
    assert agent.dead_status() == 0
    assert not path.exists()
    assert not list((agent.config / "sessions").iterdir())


def test_sighup_from_killed_pane_removes_session_file(start_agent: StartAgent) -> None:
    agent = start_agent()
    path = agent.config / "sessions" / f"{agent.pid()}.json"
    assert path.exists()
    agent.tmux("kill-pane", "-t", agent.pane)  # closes the pty: SIGHUP, like a killed session
    wait_until(lambda: not path.exists(), 5, what="session file removed")


def test_config_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    assert config_dir() == tmp_path / ".claude"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert config_dir() == tmp_path / "cfg"


def test_a_turn_plays_out_without_the_loop_or_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The turns (``fakeagent/turns.py``) are their own part: a prompt in, the reply and
    its transcript lines out, on pipes, with no event loop and no pane."""
    from agentbridge.fakeagent.options import Options
    from agentbridge.fakeagent.turns import Turns

    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        session = Turns(Options(session_id=str(uuid.uuid4())), in_fd=read_end, out_fd=write_end)
        session._start_turn("hello there", "typed")
        assert session.turn is not None and session.model.status == "busy"
        session.queue.append("second")
        session._finish_turn()  # the reply, then the queued prompt becomes the next turn
        assert session.turn is not None and session.turn.prompt == "second"
        session._finish_turn()
        assert session.turn is None and session.model.status == "idle"
        lines = [json.loads(line) for line in session.transcript.path.read_text().splitlines()]
        said = [(e["type"], str(e["message"]["content"])) for e in lines if "message" in e]
        assert [kind for kind, _ in said] == ["user", "assistant", "user", "assistant"]
        assert "hello there" in said[0][1] and reply_text("hello there") in said[1][1]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_clear_starts_a_new_session(start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.submit("one")
    agent.wait_lines(3)
    agent.keys("-l", "/clear")
    wait_until(lambda: agent.box() == "/clear", 5)
    agent.keys("Enter")
    path = agent.config / "sessions" / f"{agent.pid()}.json"
    new_id = wait_until(
        lambda: (sid := json.loads(path.read_text())["sessionId"]) != agent.session_id and sid, 5
    )
    agent.submit("two")
    wait_until(lambda: len(agent.lines(new_id)) == 3, 5)
    assert agent.lines(new_id)[0]["message"]["content"] == "two"
    assert len(agent.lines()) == 3


# ----- pure parts (no terminal) -------------------------------------------------------------


def test_parser_handles_split_sequences() -> None:
    parser = InputParser()
    data = "ab\x1b[200~x\ny\x1b[201~\r\x1b[A\x7f\x15é".encode()
    events: list[KeyEvent] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    assert events == [
        KeyEvent(KeyKind.TEXT, "a"),
        KeyEvent(KeyKind.TEXT, "b"),
        KeyEvent(KeyKind.PASTE, "x\ny"),
        KeyEvent(KeyKind.ENTER),
        KeyEvent(KeyKind.OTHER, "\x1b[A"),
        KeyEvent(KeyKind.BACKSPACE),
        KeyEvent(KeyKind.CLEAR_LINE),
        KeyEvent(KeyKind.TEXT, "é"),
    ]
    assert parser.feed(b"\x1b") == []
    assert parser.expire(now=10**12) == [KeyEvent(KeyKind.ESCAPE)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_parser_never_raises(chunks: list[bytes]) -> None:
    parser = InputParser()
    box = InputBox()
    for chunk in chunks:
        for event in parser.feed(chunk):
            if event.kind is KeyKind.PASTE:
                box.paste(event.text)
            elif event.kind is KeyKind.TEXT:
                box.type(event.text)
            elif event.kind is KeyKind.BACKSPACE:
                box.backspace()
    parser.expire(now=10**12)
    assert isinstance(box.display, str)


def test_reply_text_and_faults() -> None:
    assert reply_text(f"{ENVELOPE}\nbody\nmore") == "echo: body\nmore"
    assert reply_text("no envelope\n[agentbridge message=1]") == (
        "echo: no envelope\n[agentbridge message=1]"
    )
    long = "y" * 2001
    assert reply_text(long) == f"echo: {'y' * 200} … (2001 chars)"
    faults = parse_faults("a #fake:slow=1.5 b #fake:permission #fake:ratelimit")
    assert faults.slow == 1.5 and faults.permission and faults.api_error == "ratelimit"
    assert env_faults("hang").hang and env_faults("slow=2").slow == 2.0
