"""TmuxServer on real private tmux sockets; a raw byte recorder proves what reached the pane.

Every test using the ``server`` fixture runs twice: over the control-mode client (the default)
and with ``control=False`` (one subprocess per command): both paths must behave the same.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentbridge.agent.control_mode import CONTROL_SESSION_PREFIX
from agentbridge.agent.tmux import TmuxError, TmuxNotFound, TmuxServer, minimal_env
from agentbridge.sanitize import sanitize_text
from agentbridge.testing import async_wait_until, wait_until

# A pane program that puts its tty in raw mode, asks for bracketed paste, and appends every byte
# it reads to a log: the log is exactly what tmux wrote into the pane.
RECORDER = r"""
import os, sys, tty
tty.setraw(0)
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
os.write(1, b"\x1b[?2004hREADY\r\n")
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    os.write(log, data)
"""

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"


def pane_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TERM": "tmux-256color"}


def kill_socket(name: str) -> None:
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, check=False)
    TmuxServer(name).socket_path.unlink(missing_ok=True)


@pytest.fixture(params=[True, False], ids=["control", "subprocess"])
def server(request: pytest.FixtureRequest) -> Iterator[TmuxServer]:
    name = f"abtest-{uuid.uuid4().hex[:10]}"
    srv = TmuxServer(name, control=request.param)
    yield srv
    srv.close_control()
    kill_socket(name)


async def start_recorder(server: TmuxServer, tmp: Path, name: str = "rec") -> tuple[str, Path]:
    script = tmp / "recorder.py"
    script.write_text(RECORDER)
    log = tmp / f"{name}.bytes"
    log.touch()
    pane = await server.new_session(name, [sys.executable, str(script), str(log)], pane_env(), tmp)

    async def ready() -> bool:
        return "READY" in await server.capture(pane)

    await async_wait_until(ready, timeout=10, what="recorder ready")
    return pane, log


def expected_paste(clean: str) -> bytes:
    """tmux's paste: markers around the text, LF sent as CR (what terminals do on paste)."""
    return PASTE_START + clean.replace("\n", "\r").encode("utf-8") + PASTE_END


def assert_only_text(payload: bytes) -> None:
    """No control character other than CR and TAB inside a paste (decoded: UTF-8 continuation
    bytes 0x80–0x9f are fine, the code points U+0080–U+009F are not)."""
    text = payload.decode("utf-8")
    assert not re.search("[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f-\x9f]", text), text[:200]


# -- basics ---------------------------------------------------------------------------------


async def test_session_lifecycle_and_clean_env(server: TmuxServer, tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    os.environ["AGENTBRIDGE_TEST_SECRET"] = "leak"
    try:
        pane = await server.new_session(
            "s1",
            ["sh", "-c", f"env > {out}; sleep 60"],
            {"PATH": "/usr/bin:/bin", "ONLY": "this; $HOME #{x}"},
            tmp_path,
        )
    finally:
        del os.environ["AGENTBRIDGE_TEST_SECRET"]
    assert re.fullmatch(r"%\d+", pane)
    wait_until(lambda: out.exists() and out.read_text(), what="env dump")
    lines = set(out.read_text().splitlines())
    # sh adds PWD itself; nothing else of tmux's or ours leaks in.
    assert lines - {f"PWD={tmp_path}"} == {"PATH=/usr/bin:/bin", "ONLY=this; $HOME #{x}"}
    _, size, _ = await server.run(
        "display-message", "-p", "-t", pane, "#{pane_width}x#{pane_height}"
    )
    assert size.strip() == "200x50"
    assert await server.has_session("s1")
    assert not await server.has_session("s")  # exact match, not prefix
    pid = await server.pane_pid(pane)
    assert pid and pid > 1
    assert await server.pane_alive(pane)
    assert await server.pane_dead_status(pane) is None
    assert await server.kill_session("s1")
    assert not await server.kill_session("s1")
    assert not await server.pane_alive(pane)
    assert await server.pane_pid(pane) is None


async def test_server_env_is_minimal(server: TmuxServer, tmp_path: Path) -> None:
    os.environ["AGENTBRIDGE_TEST_SECRET"] = "leak"
    try:
        await server.new_session("s", ["sleep", "60"], {"PATH": "/bin"}, tmp_path)
    finally:
        del os.environ["AGENTBRIDGE_TEST_SECRET"]
    _, out, _ = await server.run("show-environment", "-g")
    assert "AGENTBRIDGE_TEST_SECRET" not in out
    assert set(minimal_env({"PATH": "/p", "SECRET": "x"})) == {"PATH", "LANG", "LC_ALL"}


async def test_dead_pane_remains_with_status(server: TmuxServer, tmp_path: Path) -> None:
    pane = await server.new_session(
        "d", ["sh", "-c", "echo bye; sleep 0.3; exit 7"], {"PATH": "/bin"}, "/"
    )

    async def dead() -> bool:
        return not await server.pane_alive(pane)

    await async_wait_until(dead, what="pane dies")
    # tmux 3.3a loses the status in a race now and then (pane_dead=1, empty pane_dead_status).
    assert await server.pane_dead_status(pane) in (7, None)
    assert await server.pane_pid(pane) is not None  # the dead pane remains
    # remain-on-exit keeps the last screen (scrolled up one line by tmux's "Pane is dead")
    assert "bye" in await server.capture(pane, history=10)
    assert server.socket_path.exists()
    await server.kill_server()
    assert not await server.has_session("d")
    assert not server.socket_path.exists()


async def test_errors(server: TmuxServer, tmp_path: Path) -> None:
    with pytest.raises(TmuxNotFound, match="tmux not found"):
        TmuxServer("x", tmux_bin=str(tmp_path / "no-tmux"))
    with pytest.raises(ValueError):
        await server.new_session("e", ["true"], {"BAD-NAME": "1"}, tmp_path)
    with pytest.raises(ValueError):
        await server.send_key("%0", "echo hi")
    with pytest.raises(ValueError):
        await server.new_session("a.b", ["true"], {}, tmp_path)
    await server.new_session("e", ["sleep", "60"], {"PATH": "/bin"}, tmp_path)
    with pytest.raises(TmuxError):
        await server.load_and_paste("%999", "hello")
    with pytest.raises(TmuxError):
        await server.capture("%999")
    _, out, _ = await server.run("list-buffers")
    assert out == ""  # the failed paste left no buffer behind


def test_tmux_missing_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TmuxNotFound):
        TmuxServer("x")


# -- what reaches the pane ------------------------------------------------------------------


async def test_paste_bytes_exact(server: TmuxServer, tmp_path: Path) -> None:
    pane, log = await start_recorder(server, tmp_path)
    raw = "Enter\nC-c ; \\; $HOME #{pane_id} #\x1b[201~\r\x9b201~\x00 😀 שלום ‮"
    clean = sanitize_text(raw)
    await server.load_and_paste(pane, clean)
    want = expected_paste(clean)
    wait_until(lambda: len(log.read_bytes()) >= len(want), what="paste bytes")
    got = log.read_bytes()
    assert got == want
    assert_only_text(got[len(PASTE_START) : -len(PASTE_END)])
    await server.send_enter(pane)
    await server.send_key(pane, "C-u")
    wait_until(lambda: log.read_bytes() == want + b"\r\x15", what="Enter, C-u")
    _, out, _ = await server.run("list-buffers")
    assert out == ""  # paste-buffer -d removed our buffer
    assert_path_used(server)


def assert_path_used(server: TmuxServer) -> None:
    """The control fixture really went over the control client, the other never did."""
    if server.control_enabled:
        assert server.control_stats["control"] > 0
        assert server.control_stats["subprocess"] == 0, server.control_stats
    else:
        assert server.control_stats["control"] == 0
        assert server.control_stats["connects"] == 0


async def test_one_megabyte_paste(server: TmuxServer, tmp_path: Path) -> None:
    pane, log = await start_recorder(server, tmp_path)
    raw = ("line \x1b[201~ 😀 ;\r\n" * 60_000)[: 1 << 20]
    clean = sanitize_text(raw)
    want = expected_paste(clean)
    await server.load_and_paste(pane, clean)
    wait_until(lambda: log.stat().st_size >= len(want), timeout=30, what="1 MB paste")
    got = log.read_bytes()
    assert got == want
    assert got.count(b"\x1b") == 2  # the two markers tmux added, nothing else
    assert_path_used(server)


NASTY = [
    "\x1b",
    "\x1b[201~",
    "\x1b[200~",
    "\x9b",
    "\x9b201~",
    "\x00",
    "\x03",
    "\x85",
    "\x9f",
    "\x7f",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "Enter",
    "C-c",
    ";",
    "\\;",
    "$HOME",
    "#",
    "#{pane_id}",
    "😀",
    "👩‍💻",
    "שלום",
    "مرحبا",
]


class _Recorder:
    """One recorder pane shared by the hypothesis examples (a new one per example is too slow)."""

    def __init__(self, tmp: Path) -> None:
        self.name = f"abtest-{uuid.uuid4().hex[:10]}"
        self.server = TmuxServer(self.name)
        self.pane, self.log = asyncio.run(start_recorder(self.server, tmp))


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Recorder]:
    # control on: each example's asyncio.run is a new loop, so this also exercises the
    # "client bound to a finished loop → closed, subprocess once, reconnect" path
    rec = _Recorder(tmp_path_factory.mktemp("rec"))
    yield rec
    rec.server.close_control()
    kill_socket(rec.name)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(NASTY) | st.text(min_size=1, max_size=6), max_size=10).map("".join))
def test_sanitized_paste_is_only_text(recorder: _Recorder, raw: str) -> None:
    clean = sanitize_text(raw)
    if not clean:
        return
    start = recorder.log.stat().st_size

    async def paste() -> None:
        # a new loop per example: the first call reconnects the control client, the paste
        # then goes over it
        assert await recorder.server.pane_alive(recorder.pane)
        before = recorder.server.control_stats["control"]
        await recorder.server.load_and_paste(recorder.pane, clean)
        assert recorder.server.control_stats["control"] > before

    asyncio.run(paste())
    want = expected_paste(clean)
    wait_until(lambda: recorder.log.stat().st_size >= start + len(want), what="paste bytes")
    with recorder.log.open("rb") as f:
        f.seek(start)
        got = f.read()
    assert got == want
    assert_only_text(got[len(PASTE_START) : -len(PASTE_END)])


async def test_libtmux_lookup_and_concurrent_pastes(server: TmuxServer, tmp_path: Path) -> None:
    """libtmux sees our sessions; concurrent pastes use distinct buffers and never mix."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (pa, la), (pb, lb) = await asyncio.gather(
        start_recorder(server, tmp_path / "a", "ra"), start_recorder(server, tmp_path / "b", "rb")
    )
    names = {s.session_name for s in server.libtmux().sessions}
    assert {n for n in names if not n.startswith(CONTROL_SESSION_PREFIX)} == {"ra", "rb"}
    texts_a = [f"a{i} " * 200 for i in range(10)]
    texts_b = [f"b{i} " * 200 for i in range(10)]
    for ta, tb in zip(texts_a, texts_b, strict=True):
        await asyncio.gather(server.load_and_paste(pa, ta), server.load_and_paste(pb, tb))
    want_a = b"".join(expected_paste(t) for t in texts_a)
    want_b = b"".join(expected_paste(t) for t in texts_b)
    wait_until(lambda: la.stat().st_size >= len(want_a) and lb.stat().st_size >= len(want_b))
    assert la.read_bytes() == want_a
    assert lb.read_bytes() == want_b
