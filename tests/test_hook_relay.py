"""The hook relay as the agent CLI runs it: a real subprocess reading JSON on stdin."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agentbridge.hook_relay import normalize, shell_command

RELAY = [sys.executable, "-m", "agentbridge.hook_relay"]


def run(target: Path | None, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    argv = [*RELAY, str(target)] if target is not None else RELAY
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30, check=False)


def test_appends_one_line_creates_dirs_0600_and_prints_nothing(tmp_path: Path) -> None:
    target = tmp_path / "state" / "hooks" / "events.jsonl"
    payload = {"hook_event_name": "Stop", "session_id": "s", "last_assistant_message": "a\nb ❯"}
    proc = run(target, json.dumps(payload).encode())
    assert proc.returncode == 0 and proc.stdout == b""
    lines = target.read_bytes().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["event"] == "Stop" and rec["payload"] == payload and isinstance(rec["ts"], float)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    run(target, json.dumps({"hook_event_name": "SessionEnd"}).encode())
    assert [json.loads(x)["event"] for x in target.read_bytes().splitlines()] == [
        "Stop",
        "SessionEnd",
    ]


def test_never_fails_the_agent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for target, stdin in [
        (tmp_path / "e.jsonl", b"not json {"),
        (tmp_path / "e.jsonl", b""),
        (tmp_path / "e.jsonl", b"[1,2]"),
        (blocker / "sub" / "e.jsonl", b"{}"),  # parent is a file: cannot create
        (None, b"{}"),  # no FILE argument
    ]:
        proc = run(target, stdin)
        assert proc.returncode == 0 and proc.stdout == b"", proc
    recs = [json.loads(x) for x in (tmp_path / "e.jsonl").read_bytes().splitlines()]
    assert [r["payload"] for r in recs] == [{"raw": "not json {"}, {}, {"raw": [1, 2]}]


def test_concurrent_relays_do_not_interleave(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    big = "x" * 200_000  # far above PIPE_BUF: one write(2) per record still keeps it whole

    def one(i: int) -> int:
        body = {"hook_event_name": "PostToolUse", "i": i, "blob": big if i % 4 == 0 else "y"}
        return run(target, json.dumps(body).encode()).returncode

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(one, range(48))) == {0}
    lines = target.read_bytes().split(b"\n")
    assert lines[-1] == b""
    seen = sorted(json.loads(x)["payload"]["i"] for x in lines[:-1])
    assert seen == list(range(48))


def test_imports_nothing_heavy() -> None:
    code = (
        "import sys, agentbridge.hook_relay;"
        "bad = [m for m in ('watchdog', 'aiosqlite', 'libtmux', 'pluggy', 'asyncio') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"
    assert os.path.basename(RELAY[-1]) == "agentbridge.hook_relay"


async def test_relay_file_tailed_into_hook_events(tmp_path: Path) -> None:
    """What the host does: relay subprocesses append, FileTail + ClaudeHookParser read."""
    from agentbridge.agent.tail import FileTail
    from agentbridge.envelope import Envelope, wrap
    from agentbridge.events import AgentEvent, AgentEventKind
    from agentbridge.runtimes.claude.transcript import ClaudeHookParser
    from agentbridge.testing import async_wait_until

    target = tmp_path / "hooks" / "events.jsonl"
    env = Envelope(9, 1, "local", "alice", False)
    parser = ClaudeHookParser()
    events: list[AgentEvent] = []
    async with FileTail(target, lambda line: events.extend(parser.feed_line(line))):
        for payload in (
            {"hook_event_name": "UserPromptSubmit", "prompt": wrap(env, "hi"), "prompt_id": "p"},
            {"hook_event_name": "Stop", "prompt_id": "p", "last_assistant_message": "echo: hi"},
        ):
            proc = await asyncio.create_subprocess_exec(
                *RELAY, str(target), stdin=asyncio.subprocess.PIPE
            )
            await proc.communicate(json.dumps(payload).encode())
            assert proc.returncode == 0

        async def done() -> bool:
            return len(events) == 2

        await async_wait_until(done, timeout=5, what="two hook events")
    assert [(e.kind, e.envelope, e.text) for e in events[1:]] == [
        (AgentEventKind.TURN_COMPLETED, env, "echo: hi")
    ]


# --------------------------------------------------------------------------- the shell relay

#: sizes around the pieces the shell tools write in (tr: 4 KiB, dd's ibs: 64 KiB) and the
#: largest prompt the bridge pastes into Claude Code (3.2 M chars)
SIZES = (10, 4097, 70_000, 1_500_000, 3_300_000)


def shell_relay(target: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """The hook command exactly as the CLI runs it: ``/bin/sh -c`` with the payload on stdin."""
    argv = ["/bin/sh", "-c", shell_command(str(target))]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False)


def payload(i: int, size: int) -> dict[str, object]:
    return {"hook_event_name": "UserPromptSubmit", "i": i, "prompt": f"{i}:" + "p\n" * size}


def test_shell_relay_concurrent_records_land_whole(tmp_path: Path) -> None:
    """Many relays at once (real subprocesses, small and multi-MB payloads, the trailing
    newline Claude adds, a pretty-printed payload): every record is one whole line, none lost."""
    folder = tmp_path / "it's a dir"
    folder.mkdir()
    target = folder / "hooks.jsonl"
    sent = {i: payload(i, SIZES[i % len(SIZES)]) for i in range(40)}

    def one(i: int) -> tuple[int, bytes]:
        body = json.dumps(sent[i], indent=2 if i == 7 else None) + "\n"
        proc = shell_relay(target, body.encode())
        return proc.returncode, proc.stdout + proc.stderr

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert set(pool.map(one, sent)) == {(0, b"")}
    data = target.read_bytes()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    assert len(lines) == len(sent)
    got = {}
    for line in lines:
        record = normalize(json.loads(line))  # raises on a torn or interleaved record
        assert record is not None and isinstance(record["payload"], dict)
        got[record["payload"]["i"]] = record["payload"]
    assert got == sent
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_shell_relay_turns_tailed_whole_in_any_order(tmp_path: Path) -> None:
    """What the host sees with async hooks: each turn's UserPromptSubmit and Stop relays run
    at once (Stop often first), next to the other turns'; FileTail + ClaudeHookParser still
    see every prompt and every completion with its own envelope and answer."""
    from agentbridge.agent.tail import FileTail
    from agentbridge.envelope import Envelope, wrap
    from agentbridge.events import AgentEvent, AgentEventKind
    from agentbridge.runtimes.claude.transcript import ClaudeHookParser
    from agentbridge.testing import async_wait_until

    target = tmp_path / "hooks.jsonl"
    parser = ClaudeHookParser()
    events: list[AgentEvent] = []
    turns = 16
    envs = {n: Envelope(n, 1, "local", "alice", False) for n in range(1, turns + 1)}

    async def relay(body: dict[str, object]) -> None:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", shell_command(str(target)), stdin=asyncio.subprocess.PIPE
        )
        await proc.communicate((json.dumps(body) + "\n").encode())
        assert proc.returncode == 0

    def turn(n: int) -> list[dict[str, object]]:
        size = SIZES[n % len(SIZES)]
        ups = {
            "hook_event_name": "UserPromptSubmit",
            "prompt_id": f"p{n}",
            "prompt": wrap(envs[n], "x" * size),
        }
        stop = {
            "hook_event_name": "Stop",
            "prompt_id": f"p{n}",
            "last_assistant_message": f"answer {n} " + "a" * (size // 2),
        }
        return [stop, ups] if n % 2 else [ups, stop]

    async with FileTail(target, lambda line: events.extend(parser.feed_line(line))):
        await asyncio.gather(*(relay(body) for n in envs for body in turn(n)))

        async def all_seen() -> bool:
            return len(events) >= 2 * turns

        await async_wait_until(all_seen, timeout=20, what="every turn's two hook events")
    assert parser.corrupt_lines == 0
    done = {e.envelope: e.text for e in events if e.kind == AgentEventKind.TURN_COMPLETED}
    assert {env.message_id: text.split(" ")[:2] for env, text in done.items() if env} == {
        n: ["answer", str(n)] for n in envs
    }
    recorded = [e.envelope for e in events if e.kind == AgentEventKind.PROMPT_RECORDED]
    assert sorted(e.message_id for e in recorded if e) == list(envs)
    for n in envs:  # each completion follows its own prompt's record
        kinds = [e.kind for e in events if e.envelope == envs[n]]
        assert kinds == [AgentEventKind.PROMPT_RECORDED, AgentEventKind.TURN_COMPLETED]
