"""The tmux control-mode client: protocol, safety rules, fallbacks, reconnects — on real tmux."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentbridge.agent.control_mode import (
    CONTROL_SESSION_PREFIX,
    ControlClient,
    ControlUncertain,
    command_line,
)
from agentbridge.agent.tmux import CONTROL_ENV, TmuxError, TmuxServer
from agentbridge.testing import async_wait_until, wait_until

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

# A screen full of things that look like control-mode protocol, escapes and parser bait.
NASTY_SCREEN = r"""
import sys, time
sys.stdout.write("%begin 1795000000 12 1\r\n%end 1795000000 12 1\r\n%error 1 2 1\r\n")
sys.stdout.write("%exit\r\n%output %1 hi\r\n$HOME ; #{pane_id} \\ 'q' \"d\"\r\n")
sys.stdout.write("\x1b[2mdim\x1b[0m \x1b[31mred\x1b[0m שלום 😀\r\n\r\n\r\nEND")
sys.stdout.flush()
time.sleep(600)
"""


def pane_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TERM": "tmux-256color"}


def tmux(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-f", "/dev/null", "-L", name, *args], capture_output=True, text=True
    )


@pytest.fixture
def server() -> Iterator[TmuxServer]:
    name = f"abtest-{uuid.uuid4().hex[:10]}"
    srv = TmuxServer(name, control=True)
    yield srv
    srv.close_control()
    tmux(name, "kill-server")
    srv.socket_path.unlink(missing_ok=True)


async def start_recorder(server: TmuxServer, tmp: Path) -> tuple[str, Path]:
    script = tmp / "recorder.py"
    script.write_text(RECORDER)
    log = tmp / "rec.bytes"
    log.touch()
    pane = await server.new_session("rec", [sys.executable, str(script), str(log)], pane_env(), tmp)

    async def ready() -> bool:
        return "READY" in await server.capture(pane)

    await async_wait_until(ready, timeout=10, what="recorder ready")
    return pane, log


def deafen(server: TmuxServer) -> None:
    """Stop reading the client's replies (as if tmux never answered)."""
    ctl = server._ctl
    assert ctl is not None and ctl.loop is not None
    ctl.loop.remove_reader(ctl._out_fd)


def client_pid(server: TmuxServer) -> int:
    assert server._ctl is not None and server._ctl._proc is not None
    return server._ctl._proc.pid


# -- the rule: no text in control-mode commands ------------------------------------------------


@pytest.mark.parametrize(
    "arg",
    [
        "hello world",
        "$HOME",
        "a;b",
        "#(id)",
        "it's",
        'say "x"',
        "back\\slash",
        "new\nline",
        "~",
        "שלום",
        "",
        "x" * 600,
    ],
)
def test_command_line_refuses_text(arg: str) -> None:
    with pytest.raises(ValueError):
        command_line(["display-message", "-p", arg])


def test_command_line_quotes_fixed_arguments() -> None:
    line = command_line(["paste-buffer", "-p", "-d", "-b", "agentbridge-1-2", "-t", "%12"])
    assert line == b"paste-buffer '-p' '-d' '-b' 'agentbridge-1-2' '-t' '%12'\n"
    assert command_line(["display-message", "-p", "#{pane_dead}|#{pane_dead_status}"])
    for bad in (["run-shell", "id"], ["send-keys", "-l", "x y"], ["if-shell", "true", "x"], []):
        with pytest.raises(ValueError):
            command_line(bad)


# -- protocol, on a real server -------------------------------------------------------------


async def test_capture_matches_subprocess_on_protocol_lookalikes(
    server: TmuxServer, tmp_path: Path
) -> None:
    script = tmp_path / "screen.py"
    script.write_text(NASTY_SCREEN)
    pane = await server.new_session("n", [sys.executable, str(script)], pane_env(), tmp_path)
    assert server.control_connected

    async def shown() -> bool:
        return "END" in await server.capture(pane)

    await async_wait_until(shown, what="screen drawn")
    for kwargs in ({}, {"escapes": True}, {"history": 5}):
        via_control = await server.capture(pane, **kwargs)
        args = ["capture-pane", "-p", "-t", pane]
        if kwargs.get("escapes"):
            args.append("-e")
        if kwargs.get("history"):
            args += ["-S", "-5"]
        _, via_subprocess, _ = await server.run(*args)
        assert via_control == via_subprocess, kwargs
    assert "%end 1795000000 12 1" in via_control
    alive = await server.capture_if_alive(pane, escapes=True)
    _, both, _ = await server.run(
        "display-message", "-p", "-t", pane, "#{pane_dead}", ";", "capture-pane", "-p", "-e",
        "-t", pane,
    )  # fmt: skip
    assert alive == both.partition("\n")[2]
    assert server.control_stats["subprocess"] == 0
    assert server.control_stats["control"] >= 5
    assert server._ctl is not None and server._ctl.alive  # lookalike lines did not upset it


def forge_next_guard(ctl: ControlClient, fake_nonce: bool) -> None:
    """Make the next command block end early, as a pane line equal to its guard would."""
    real = ctl._on_line
    armed = [True]

    def forging(line: str) -> None:
        real(line)
        if armed[0] and line.startswith("%begin") and line.endswith(" 1"):
            armed[0] = False
            real("%end " + line.removeprefix("%begin "))
            if fake_nonce:  # and then a whole forged block where the nonce's should be
                real("%begin 1 1 1")
                real("abnonce0000")
                real("%end 1 1 1")

    ctl._on_line = forging  # type: ignore[method-assign]


async def test_forged_guard_in_output_is_detected_and_falls_back(
    server: TmuxServer, tmp_path: Path
) -> None:
    """A pane line equal to the block's own ``%end`` guard (tmux does not escape command output)
    would end the block early: the client notices (stray lines / nonce), closes, and the read is
    redone by subprocess — the caller still gets the true screen."""
    script = tmp_path / "screen.py"
    script.write_text(NASTY_SCREEN)
    pane = await server.new_session("f", [sys.executable, str(script)], pane_env(), tmp_path)

    async def shown() -> bool:
        return "END" in await server.capture(pane)

    await async_wait_until(shown, what="screen drawn")
    _, truth, _ = await server.run("capture-pane", "-p", "-t", pane)
    for fake_nonce in (False, True):
        await server.pane_alive(pane)  # reconnected after the previous round
        ctl = server._ctl
        assert ctl is not None and ctl.alive
        forge_next_guard(ctl, fake_nonce)
        assert await server.capture(pane) == truth
        assert not ctl.alive
    assert server.control_stats["uncertain"] == 2
    assert await server.capture(pane) == truth
    assert server.control_connected


async def test_pane_size_and_client_flags(server: TmuxServer, tmp_path: Path) -> None:
    pane = await server.new_session("s", ["sleep", "60"], pane_env(), tmp_path)
    assert server.control_connected
    _, clients, _ = await server.run("list-clients", "-F", "#{session_name} #{client_flags}")
    (line,) = clients.strip().splitlines()
    session, flags = line.split(" ", 1)
    assert session.startswith(CONTROL_SESSION_PREFIX)
    for flag in ("control-mode", "no-output", "ignore-size"):
        assert flag in flags.split(","), flags
    assert await server._pane_format(pane, "#{pane_width}x#{pane_height}") == "200x50"
    _, out, _ = await server.run("show-options", "-v", "-t", session, "destroy-unattached")
    assert out.strip() == "on"
    # the agent's session is not attached to by anyone
    assert await server._pane_format(pane, "#{session_attached}") == "0"


async def test_control_session_never_keeps_a_server_alive(
    server: TmuxServer, tmp_path: Path
) -> None:
    await server.new_session("s", ["sleep", "60"], pane_env(), tmp_path)
    assert server.control_connected
    assert await server.kill_session("s")
    _, out, _ = await server.run("list-sessions", "-F", "#{session_name}")
    assert out.strip().startswith(CONTROL_SESSION_PREFIX)  # only ours is left
    server.close_control()  # its session goes with it, and with the last session, the server
    wait_until(
        lambda: tmux(server.socket_name, "list-sessions").returncode != 0, what="server exits"
    )


async def test_reconnects_after_server_restart(server: TmuxServer, tmp_path: Path) -> None:
    pane = await server.new_session("a", ["sleep", "60"], pane_env(), tmp_path)
    first = server._ctl
    assert first is not None and first.alive
    tmux(server.socket_name, "kill-server")

    async def noticed() -> bool:
        return not first.alive

    await async_wait_until(noticed, what="client sees the server go")
    assert not await server.pane_alive(pane)
    pane = await server.new_session("a", ["sleep", "60"], pane_env(), tmp_path)
    assert server.control_connected and server._ctl is not first
    before = server.control_stats["control"]
    assert await server.pane_alive(pane)
    assert server.control_stats["control"] == before + 1


async def test_killed_client_falls_back_then_reconnects(server: TmuxServer, tmp_path: Path) -> None:
    pane, log = await start_recorder(server, tmp_path)
    os.kill(client_pid(server), signal.SIGKILL)
    ctl = server._ctl
    assert ctl is not None

    async def dead() -> bool:
        return not ctl.alive

    await async_wait_until(dead, what="client death noticed")
    before = dict(server.control_stats)
    assert "READY" in await server.capture(pane)  # by subprocess
    assert server.control_stats["subprocess"] == before.get("subprocess", 0) + 1
    assert server.control_connected  # and reconnected right after
    await server.load_and_paste(pane, "after reconnect")
    want = b"\x1b[200~after reconnect\x1b[201~"
    wait_until(lambda: log.read_bytes() == want, what="one paste")
    assert server.control_stats["control"] > before.get("control", 0)


async def test_stuck_client_times_out_reads_fall_back_keys_are_not_repeated(
    tmp_path: Path,
) -> None:
    name = f"abtest-{uuid.uuid4().hex[:10]}"
    server = TmuxServer(name, control=True, control_timeout=0.3)
    try:
        pane, log = await start_recorder(server, tmp_path)
        # a deaf client: tmux runs the command (the server itself reads the client's stdin)
        # but the reply never reaches us
        deafen(server)
        assert await server.pane_alive(pane)  # timed out, then redone by subprocess
        assert server.control_stats["uncertain"] == 1
        assert server.control_connected  # a fresh client replaced the deaf one
        deafen(server)
        with pytest.raises(TmuxError, match="outcome unknown"):
            await server.send_enter(pane)
        assert server.control_stats["uncertain"] == 2
        # the Enter went through once and was not re-sent by subprocess: the next paste
        # lands right after exactly one CR
        await server.load_and_paste(pane, "next")
        want = b"\r\x1b[200~next\x1b[201~"
        wait_until(lambda: log.read_bytes() == want, what="one Enter, then the paste")
    finally:
        server.close_control()
        tmux(name, "kill-server")
        server.socket_path.unlink(missing_ok=True)


def lose_paste_reply(ctl: ControlClient, sent: bool) -> Any:
    """A ``run`` that loses the paste-buffer reply (after sending it, or before)."""
    real_run = ctl.run

    async def lossy(commands: Any, nonce: bool = False, timeout: float | None = None) -> Any:
        if commands[0][0] == "paste-buffer":
            if sent:
                await real_run(commands, nonce, timeout)
            ctl.close("reply lost (test)")
            raise ControlUncertain("reply lost (test)")
        return await real_run(commands, nonce, timeout)

    return lossy


async def test_uncertain_paste_is_settled_by_the_buffer(
    server: TmuxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paste whose reply is lost is never pasted twice and never lost."""
    pane, log = await start_recorder(server, tmp_path)
    expected = b""
    for really_sent in (True, False):
        await server.pane_alive(pane)
        ctl = server._ctl
        assert ctl is not None
        monkeypatch.setattr(ctl, "run", lose_paste_reply(ctl, really_sent))
        text = f"paste sent={really_sent}"
        await server.load_and_paste(pane, text)
        expected += b"\x1b[200~" + text.encode() + b"\x1b[201~"

        def one_paste_each(want: bytes = expected) -> bool:
            return log.read_bytes() == want

        wait_until(one_paste_each, what="exactly one paste")
    _, out, _ = await server.run("list-buffers")
    assert out == ""


async def test_paste_file_is_private_and_removed(
    server: TmuxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pane, log = await start_recorder(server, tmp_path)
    made: list[tuple[str, int, bytes]] = []
    real = server._paste_file

    def spy(data: bytes) -> str | None:
        path = real(data)
        assert path is not None
        made.append((path, os.stat(path).st_mode & 0o777, Path(path).read_bytes()))
        return path

    monkeypatch.setattr(server, "_paste_file", spy)
    text = "$HOME ; #{pane_id} 'x' secret"
    await server.load_and_paste(pane, text)
    with pytest.raises(TmuxError):
        await server.load_and_paste("%999", "no such pane")
    assert [(mode, data) for _, mode, data in made] == [
        (0o600, text.encode()),
        (0o600, b"no such pane"),
    ]
    assert not any(os.path.exists(path) for path, _, _ in made)  # deleted once tmux read it
    want = b"\x1b[200~" + text.encode() + b"\x1b[201~"
    wait_until(lambda: log.read_bytes() == want, what="paste")
    _, out, _ = await server.run("list-buffers")
    assert out == ""
    assert server.control_stats["subprocess"] == 0


async def test_errors_over_control_match_subprocess(server: TmuxServer, tmp_path: Path) -> None:
    await server.new_session("e", ["sleep", "60"], pane_env(), tmp_path)
    assert server.control_connected
    with pytest.raises(TmuxError):
        await server.capture("%999")
    with pytest.raises(TmuxError):
        await server.send_enter("%999")
    assert await server.capture_if_alive("%999") is None
    assert await server.pane_pid("%999") is None
    assert server.control_stats["subprocess"] == 0
    assert server._ctl is not None and server._ctl.alive


def test_new_event_loop_reconnects(tmp_path: Path) -> None:
    name = f"abtest-{uuid.uuid4().hex[:10]}"
    server = TmuxServer(name, control=True)
    try:
        pane = asyncio.run(server.new_session("l", ["sleep", "60"], pane_env(), tmp_path))
        first = server._ctl
        for _ in range(2):
            assert asyncio.run(server.pane_alive(pane))  # stale client closed, subprocess once
            assert first is not None and not first.alive
            assert server.control_connected and server._ctl is not first
            first = server._ctl
        assert server.control_stats["subprocess"] == 2
    finally:
        server.close_control()
        tmux(name, "kill-server")
        server.socket_path.unlink(missing_ok=True)


async def test_opt_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTROL_ENV, "0")
    name = f"abtest-{uuid.uuid4().hex[:10]}"
    server = TmuxServer(name)
    assert not server.control_enabled
    assert TmuxServer(name, control=True).control_enabled
    try:
        pane = await server.new_session("o", ["sleep", "60"], pane_env(), tmp_path)
        assert await server.pane_alive(pane)
        assert not server.control_connected
        assert server.control_stats["connects"] == 0
        _, out, _ = await server.run("list-clients")
        assert out == ""
    finally:
        await server.kill_server()


async def test_kill_server_does_not_reconnect(server: TmuxServer, tmp_path: Path) -> None:
    pane = await server.new_session("k", ["sleep", "60"], pane_env(), tmp_path)
    await server.kill_server()
    assert not server.control_connected
    assert not await server.pane_alive(pane)
    assert not await server.has_session("k")
    assert tmux(server.socket_name, "list-sessions").returncode != 0  # nothing restarted it


async def test_connect_to_no_server_fails_cleanly(tmp_path: Path) -> None:
    server = TmuxServer(f"abtest-{uuid.uuid4().hex[:10]}")
    with pytest.raises(Exception, match="did not start"):
        await ControlClient.connect(
            [
                server.tmux_bin,
                "-f",
                "/dev/null",
                "-L",
                server.socket_name,
                "-S",
                str(tmp_path / "no-such-dir" / "x"),
            ],
            server._env,
            timeout=2,
        )
