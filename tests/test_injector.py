"""Injector against real panes: the fake agent (Claude-like) and a box that never submits."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentbridge.agent.injector import (
    InjectionOutcome,
    Injector,
    InjectorConfig,
    text_visible,
)
from agentbridge.agent.tmux import TmuxServer
from agentbridge.fakeagent.transcript_writer import project_dir_name
from agentbridge.runtimes.claude.profile import claude_box
from agentbridge.sanitize import sanitize_text
from agentbridge.testing import async_wait_until

PASTE_START = b"\x1b[200~"

# A box that shows whatever is pasted on a ❯ line and ignores Enter: an agent that never takes
# the prompt. Logs raw bytes like the fake agent.
STUCK_BOX = r"""
import os, sys, tty
tty.setraw(0)
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
os.write(1, b"\x1b[?2004h")
seen = b""
def draw():
    text = seen.replace(b"\x1b[200~", b"").replace(b"\x1b[201~", b"").replace(b"\r", b"")
    os.write(1, b"\x1b[H\x1b[2J" + "\u2500".encode() * 10 + b"\r\n\xe2\x9d\xaf\xc2\xa0" + text
             + b"\r\n" + "\u2500".encode() * 10)
draw()
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    os.write(log, data)
    seen += data
    draw()
"""


@dataclass
class Agent:
    server: TmuxServer
    pane: str
    byte_log: Path
    transcript: Path

    def prompts(self) -> list[str]:
        """User prompts in the fake agent's transcript (its own record)."""
        if not self.transcript.exists():
            return []
        out = []
        for line in self.transcript.read_text().splitlines():
            rec = json.loads(line)
            content = rec.get("message", {}).get("content")
            if rec.get("type") == "user" and isinstance(content, str):
                out.append(content)
        return out

    def recorded(self, text: str) -> asyncio.Event:
        """An Event set when ``text`` shows as a prompt in the transcript (as the host does)."""
        event = asyncio.Event()

        async def watch() -> None:
            await async_wait_until(lambda: _true(text in self.prompts()), timeout=30)
            event.set()

        task = asyncio.get_running_loop().create_task(watch())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return event

    async def box(self) -> str | None:
        return claude_box(await self.server.capture(self.pane))


_tasks: set[asyncio.Task[None]] = set()


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
def server() -> Iterator[TmuxServer]:
    name = f"abtest-{uuid.uuid4().hex[:10]}"
    yield TmuxServer(name)
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, check=False)
    TmuxServer(name).socket_path.unlink(missing_ok=True)


def pane_env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "TERM": "tmux-256color",
        "HOME": str(tmp),
        "CLAUDE_CONFIG_DIR": str(tmp / "claude"),
    }


@pytest.fixture
def real_tmp(tmp_path: Path) -> Path:
    """tmp_path without symlinks: the fake agent names its transcript folder after getcwd()."""
    return tmp_path.resolve()


@pytest.fixture
def paste_delay() -> float:
    """The fake agent's ``--paste-delay`` (override with a parametrized fixture)."""
    return 0.02


@pytest.fixture
async def agent(server: TmuxServer, real_tmp: Path, paste_delay: float) -> AsyncIterator[Agent]:
    cwd = real_tmp
    sid = str(uuid.uuid4())
    log = cwd / "agent.bytes"
    argv = [sys.executable, "-m", "agentbridge.fakeagent", "--session-id", sid]
    argv += ["--paste-delay", str(paste_delay), "--byte-log"]
    pane = await server.new_session("agent", [*argv, str(log)], pane_env(cwd), cwd)
    transcript = cwd / "claude" / "projects" / project_dir_name(str(cwd)) / f"{sid}.jsonl"
    a = Agent(server, pane, log, transcript)

    async def ready() -> bool:
        return await a.box() == ""

    await async_wait_until(ready, timeout=15, what="fake agent ready")
    yield a


FAST = InjectorConfig(verify_timeout=0.5, visible_timeout=3.0)


async def test_accepted_with_one_enter(agent: Agent) -> None:
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    text = "[agentbridge message=1 attempt=1 channel=local sender=alice]\nhello there"
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 1
    assert agent.prompts() == [text]
    log = agent.byte_log.read_bytes()
    assert log.count(PASTE_START) == 1 and log.endswith(b"\x1b[201~\r")
    assert {"check", "paste", "visible", "enter1", "accepted", "total"} <= set(result.timings)


async def test_enter_follows_visibility_without_a_fixed_wait(agent: Agent) -> None:
    # The old injector slept 100 ms after the text showed; nothing stands between them now.
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    text = "enter at once"
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 1
    assert result.timings["enter1"] - result.timings["visible"] < 90, result.timings


@pytest.mark.parametrize("paste_delay", [0.4])
async def test_slow_paste_enter_waits_for_the_text(agent: Agent) -> None:
    # The agent takes 400 ms to take the paste in and swallows any Enter before that: the one
    # Enter comes after the text shows, however long that takes, and is taken.
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    text = "a slow paste"
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 1
    assert result.timings["enter1"] - result.timings["paste"] >= 400, result.timings
    assert agent.byte_log.read_bytes().endswith(b"\x1b[201~\r")


async def test_swallowed_enter_is_pressed_again_never_repasted(agent: Agent) -> None:
    # The fake agent loses the first Enter for this text (the rare swallowed Enter, on demand).
    cfg = InjectorConfig(verify_timeout=0.4)
    inj = Injector(agent.server, agent.pane, claude_box, config=cfg)
    text = "swallowed enter test #fake:swallow=1"
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 2
    assert agent.prompts() == [text]
    log = agent.byte_log.read_bytes()
    assert log.count(PASTE_START) == 1
    assert log.endswith(b"\x1b[201~\r\r")


async def test_a_swallowed_enter_on_an_unchanged_screen_is_pressed_again_early(
    agent: Agent,
) -> None:
    # Nothing on screen moved after the Enter: the agent did not react, so the re-press comes
    # after retry_after, not after the (here huge) verify_timeout; still one paste, one prompt.
    cfg = InjectorConfig(verify_timeout=10.0, retry_after=0.3)
    inj = Injector(agent.server, agent.pane, claude_box, config=cfg)
    text = "early retry #fake:swallow=1"
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 2
    assert 300 <= result.timings["enter2"] - result.timings["enter1"] < 5000, result.timings
    assert agent.prompts() == [text]
    log = agent.byte_log.read_bytes()
    assert log.count(PASTE_START) == 1 and log.endswith(b"\x1b[201~\r\r")


async def test_only_the_first_re_press_is_early(agent: Agent) -> None:
    cfg = InjectorConfig(verify_timeout=1.0, retry_after=0.2)
    inj = Injector(agent.server, agent.pane, claude_box, config=cfg)
    text = "two lost enters #fake:swallow=2"
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 3
    assert result.timings["enter2"] - result.timings["enter1"] < 1000, result.timings
    assert result.timings["enter3"] - result.timings["enter2"] >= 1000, result.timings
    assert agent.prompts() == [text]


async def test_a_taken_enter_with_a_slow_record_is_never_pressed_again(agent: Agent) -> None:
    # The box empties at once but the record comes 1.5 s later: one Enter, however long.
    cfg = InjectorConfig(verify_timeout=3.0, retry_after=0.1)
    inj = Injector(agent.server, agent.pane, claude_box, config=cfg)
    text = "slow record"
    late = asyncio.Event()

    async def record_late() -> None:
        await agent.recorded(text).wait()
        await asyncio.sleep(1.5)  # the agent's record lagging, not a wait for a result
        late.set()

    task = asyncio.get_running_loop().create_task(record_late())
    result = await inj.inject(text, late)
    await task
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert result.enter_presses == 1
    assert agent.byte_log.read_bytes().endswith(b"\x1b[201~\r")


async def test_leftover_text_is_not_clobbered(agent: Agent) -> None:
    # A human typed into the box (send-keys -l is the test's stand-in for a keyboard).
    await agent.server.run("send-keys", "-t", agent.pane, "-l", "half-typed")

    async def typed() -> bool:
        return await agent.box() == "half-typed"

    await async_wait_until(typed, what="typed text in box")
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    result = await inj.inject("from the bridge", agent.recorded("from the bridge"))
    assert result.outcome is InjectionOutcome.BOX_NOT_EMPTY
    assert result.enter_presses == 0 and result.box == "half-typed"
    assert PASTE_START not in agent.byte_log.read_bytes()
    assert b"\r" not in agent.byte_log.read_bytes()
    assert await agent.box() == "half-typed"
    assert agent.prompts() == []


@pytest.mark.parametrize("lines", [3, 12])
async def test_multiline_is_one_prompt(agent: Agent, lines: int) -> None:
    # 3 lines show in the box as text, 12 as Claude's "[Pasted text #1 +11 lines]".
    text = "\n".join(f"line {i}: Enter ; $HOME #{{x}}" for i in range(lines))
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    result = await inj.inject(text, agent.recorded(text))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert agent.prompts() == [text]


async def test_hostile_text_arrives_as_text(agent: Agent) -> None:
    raw = "a\x1b[201~\rC-c\x9b201~\x00 Enter; $HOME #{pane_id} 😀 שלום\r\nend"
    clean = sanitize_text(raw)
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    result = await inj.inject(raw, agent.recorded(clean))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert agent.prompts() == [clean]
    log = agent.byte_log.read_bytes()
    assert log.count(b"\x1b") == 2  # only tmux's paste markers


async def test_predicate_and_no_signal(agent: Agent) -> None:
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)

    async def seen() -> bool:
        return "via predicate" in agent.prompts()

    result = await inj.inject("via predicate", seen)
    assert result.outcome is InjectionOutcome.ACCEPTED, result

    async def idle() -> bool:
        return await agent.box() == "" and len(agent.prompts()) == 1

    await async_wait_until(idle, what="idle again")
    result = await inj.inject("no record given", None)
    assert result.outcome is InjectionOutcome.SUBMITTED_UNVERIFIED, result
    assert result.enter_presses == 1
    await async_wait_until(lambda: _true("no record given" in agent.prompts()))


async def test_stuck_box_bounded_enters(server: TmuxServer, tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_BOX)
    log = tmp_path / "stuck.bytes"
    log.touch()
    pane = await server.new_session(
        "stuck", [sys.executable, str(script), str(log)], pane_env(tmp_path), tmp_path
    )

    async def ready() -> bool:
        return claude_box(await server.capture(pane)) == ""

    await async_wait_until(ready, what="stuck box drawn")
    cfg = InjectorConfig(settle=0.01, verify_timeout=0.15, max_enters=3)

    async def never() -> bool:
        return False

    result = await Injector(server, pane, claude_box, config=cfg).inject("stays here", never)
    assert result.outcome is InjectionOutcome.NOT_SUBMITTED
    assert result.enter_presses == 3
    assert log.read_bytes() == b"\x1b[200~stays here\x1b[201~\r\r\r"  # pasted once, 3 Enters


async def test_no_box_no_paste(server: TmuxServer, tmp_path: Path) -> None:
    pane = await server.new_session("plain", ["sleep", "60"], {"PATH": os.environ["PATH"]}, "/")
    result = await Injector(server, pane, claude_box, config=FAST).inject("hello", None)
    assert result.outcome is InjectionOutcome.BOX_NOT_FOUND
    _, out, _ = await server.run("list-buffers")
    assert out == ""


async def test_empty_message_refused(agent: Agent) -> None:
    with pytest.raises(ValueError):
        await Injector(agent.server, agent.pane, claude_box).inject("\x1b\x00 \n", None)


# -- text visibility ---------------------------------------------------------------------------


def test_text_visible() -> None:
    assert text_visible("[Pasted text #3 +40 lines]", "x\n" * 41)
    assert text_visible("hello wor\nld", "hello world")
    assert not text_visible("hello", "hello world")
    assert not text_visible("", "x")
    assert text_visible("😀😀", "😀😀")  # no ASCII tail: any content counts


async def test_dead_pane_gets_nothing(server: TmuxServer, tmp_path: Path) -> None:
    # The last screen still shows a ❯ box, but the process is gone.
    script = "printf '────\\r\\n❯\\302\\240\\r\\n────'; sleep 0.2"
    pane = await server.new_session("dead", ["sh", "-c", script], pane_env(tmp_path), "/")

    async def dead() -> bool:
        return not await server.pane_alive(pane)

    await async_wait_until(dead, what="pane dies")
    result = await Injector(server, pane, claude_box, config=FAST).inject("hello", None)
    assert result.outcome is InjectionOutcome.PANE_DEAD
    _, out, _ = await server.run("list-buffers")
    assert out == ""


async def test_clear_box_and_stale_event(agent: Agent) -> None:
    await agent.server.run("send-keys", "-t", agent.pane, "-l", "leftover")

    async def typed() -> bool:
        return await agent.box() == "leftover"

    await async_wait_until(typed, what="typed text in box")
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    assert await inj.clear_box()
    assert await agent.box() == ""
    stale = asyncio.Event()
    stale.set()
    with pytest.raises(ValueError, match="already set"):
        await inj.inject("hello", stale)
    assert PASTE_START not in agent.byte_log.read_bytes()


#: every invisible format character (Unicode category Cf) this Python knows
_ALL_CF = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
#: kept on purpose (sanitize.py): ZWNJ and ZWJ; tag characters only inside an emoji flag
_KEPT_CF = {"\u200c", "\u200d"}
_FLAG = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")


def _stray_cf(log: bytes) -> list[str]:
    text = _FLAG.sub("", log.decode("utf-8", errors="replace"))
    return sorted({c for c in text if unicodedata.category(c) == "Cf" and c not in _KEPT_CF})


async def test_format_characters_never_reach_the_pane(agent: Agent) -> None:
    """Bidi overrides, isolates, zero-width and tag characters: removed; emoji ZWJ kept."""
    raw = "x".join(_ALL_CF) + " if a == \u202e\u2066admin\u2069 👩\u200d💻 🏴\U000e0067\U000e0062"
    raw += "\U000e0065\U000e006e\U000e0067\U000e007f end"
    clean = sanitize_text(raw)
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    result = await inj.inject(raw, agent.recorded(clean))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert agent.prompts() == [clean]
    log = agent.byte_log.read_bytes()
    assert _stray_cf(log) == []
    assert "👩\u200d💻".encode() in log and b"if a == admin" in log


_PANE_TEXT = st.lists(
    st.sampled_from(_ALL_CF)
    | st.sampled_from(["\u200d", "👩", "💻", "שלום", "\ufe0f", "\U0001f3f4", "\U000e007f"])
    | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6),
    min_size=1,
    max_size=16,
).map("".join)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=_PANE_TEXT)
async def test_no_format_character_reaches_the_pane_byte_log(agent: Agent, text: str) -> None:
    """Property, through real tmux: nothing of category Cf except ZWJ/ZWNJ/flag tags arrives."""
    raw = f"m{uuid.uuid4().hex[:8]} {text}"  # never empty after sanitizing; one prompt each
    clean = sanitize_text(raw)
    inj = Injector(agent.server, agent.pane, claude_box, config=FAST)
    result = await inj.inject(raw, agent.recorded(clean))
    assert result.outcome is InjectionOutcome.ACCEPTED, result
    assert agent.prompts()[-1] == clean
    assert _stray_cf(agent.byte_log.read_bytes()) == []
