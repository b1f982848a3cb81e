"""Bad input and a bad environment: one clear line, exit non-zero, the ledger untouched.

Everything runs as the user runs it: ``agentbridge`` as a real subprocess with a real config
file and a real SQLite ledger; invalid UTF-8 goes in as raw bytes in argv and on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.ledger.sqlite import Ledger, NewMessage

CLI = [sys.executable, "-m", "agentbridge.cli"]


def socket_name(tmp: Path) -> str:
    return f"abbad-{os.getpid()}-{tmp.name[-12:]}"


@pytest.fixture(autouse=True)
def _no_tmux_left(tmp_path: Path) -> Iterator[None]:
    """Had a refusal failed, ``up`` would have started our tmux server: never leave it."""
    yield
    subprocess.run(["tmux", "-L", socket_name(tmp_path), "kill-server"], capture_output=True)


def write_config(tmp: Path, extra: str = "", *, cwd: Path | None = None) -> Path:
    """A config with its own state dir, ledger and tmux socket name; console off by default."""
    work = cwd or tmp / "work"
    work.mkdir(exist_ok=True)
    config = tmp / "agentbridge.toml"
    config.write_text(
        f'state_dir = "{tmp / "state"}"\n'
        f'tmux_socket = "{socket_name(tmp)}"\n'
        f'[ledger]\npath = "{tmp / "db" / "ledger.db"}"\n'
        f'[agents.main]\nruntime = "demo"\ncwd = "{work}"\n'
        f"{extra}\n"
    )
    return config


def run(
    tmp: Path, *args: str | bytes, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTBRIDGE", "XDG_"))}
    env.update(HOME=str(tmp / "home"), LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, input=stdin, timeout=timeout, check=False
    )


def one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line (and never a traceback)."""
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("agentbridge: "), err
    return lines[0]


def ledger_messages(tmp: Path) -> list[tuple[str, str, str, str | None]]:
    async def read() -> list[tuple[str, str, str, str | None]]:
        async with await Ledger.open(tmp / "db" / "ledger.db") as led:
            found = await led.list_messages()
        return [(m.text, m.sender, m.conversation, m.platform_id) for m in found]

    return asyncio.run(read())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- invalid UTF-8


def test_send_invalid_utf8_argv_is_stored_with_replacement(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = run(tmp_path, "--config", str(config), "send", "--sender", b"b\xffb", b"caf\xe9 \xff ok")
    assert done.returncode == 0, done.stderr
    assert "not valid UTF-8" in one_line(done)
    assert done.stdout.decode().strip().isdigit()
    [(text, sender, conversation, key)] = ledger_messages(tmp_path)
    assert (text, sender, conversation) == ("caf\ufffd \ufffd ok", "b\ufffdb", "cli")
    assert key is not None and key.startswith("cli-send:")  # made up: a lost answer is retried


def test_send_invalid_utf8_stdin_is_stored_with_replacement(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = run(tmp_path, "--config", str(config), "send", "--key", b"k\xfe", "-", stdin=b"a\xffb\n")
    assert done.returncode == 0, done.stderr
    assert "not valid UTF-8" in one_line(done)
    assert ledger_messages(tmp_path) == [
        ("a\ufffdb\n", os.environ.get("USER", "cli"), "cli", "k\ufffd")
    ]
    again = run(
        tmp_path, "--config", str(config), "send", "--key", b"k\xfe", "-", stdin=b"a\xffb\n"
    )
    assert again.returncode == 0 and again.stdout == done.stdout  # same key, same message


def test_valid_utf8_says_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = run(tmp_path, "send", "--config", str(config), "-", stdin="שלום 😀".encode())
    assert done.returncode == 0 and done.stderr == b""
    assert ledger_messages(tmp_path)[0][0] == "שלום 😀"


async def test_ledger_ingest_replaces_lone_surrogates_in_every_field(tmp_path: Path) -> None:
    """The one place every channel goes through: nothing it is given can crash the insert."""
    async with await Ledger.open(tmp_path / "ledger.db") as led:
        one = await led.ingest("c\ud800", "v\udcff", "s\udfff", "t\ud800x", key="k\udc80")
        assert (one.message.channel, one.message.conversation, one.message.sender) == (
            "c\ufffd",
            "v\ufffd",
            "s\ufffd",
        )
        assert (one.message.text, one.message.platform_id) == ("t\ufffdx", "k\ufffd")
        again = await led.ingest("c\ud800", "v\udcff", "s\udfff", "t\ud800x", key="k\udc80")
        assert again.message.id == one.message.id and not again.created
        (many,) = await led.ingest_many([NewMessage("http", "c", "s", "\ud83d\ude00\ud800")])
        assert many.message.text == "😀\ufffd"
        claimed = await led.claim_next("default", "host", 60)
        assert claimed is not None
        done = await led.complete(claimed.id, claimed.fence, "reply \udcff")
        assert done.reply == "reply \ufffd"
        extra = await led.enqueue_reply("c", "v", "more \ud800", "key \udcff")
        assert (extra.text, extra.idem_key) == ("more \ufffd", "key \ufffd")


# ---------------------------------------------------------------------- global flags


def test_global_flags_work_after_the_subcommand(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    sent = run(tmp_path, "send", "--config", str(config), "hi", "-v")
    assert sent.returncode == 0, sent.stderr
    before = run(tmp_path, "--config", str(config), "messages", "--json")
    after = run(tmp_path, "messages", "--json", "--config", str(config))
    assert before.returncode == after.returncode == 0
    assert after.stdout == before.stdout and b'"hi"' in after.stdout
    status = run(tmp_path, "status", "--config", str(config))
    assert status.returncode == 0 and b"main" in status.stdout
    missing = run(tmp_path, "status", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "file not found" in one_line(missing)


# ---------------------------------------------------------------------- `up` refusals


def seeded(tmp_path: Path, config: Path) -> Path:
    """A ledger with one message in it, so "untouched" can be checked byte for byte."""
    assert run(tmp_path, "--config", str(config), "send", "seed").returncode == 0
    return tmp_path / "db" / "ledger.db"


def test_up_refuses_a_missing_agent_cwd(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "project"
    config = write_config(tmp_path, cwd=tmp_path / "work")
    ledger = seeded(tmp_path, config)
    config.write_text(config.read_text().replace(str(tmp_path / "work"), str(missing)))
    before = digest(ledger)
    done = run(tmp_path, "up", "--config", str(config))  # the flag after `up`, too
    assert done.returncode == 1
    line = one_line(done)
    assert "agents.main.cwd" in line and "does not exist" in line and "mkdir -p" in line
    assert not missing.exists()  # not silently created
    assert digest(ledger) == before


@contextlib.contextmanager
def listening() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("table", ["console", "channels.http"])
def test_up_refuses_a_port_in_use(tmp_path: Path, table: str) -> None:
    with listening() as port:
        extra = f"[{table}]\nport = {port}\n"
        if table == "channels.http":
            extra += "[console]\nenabled = false\n"
        config = write_config(tmp_path, extra)
        ledger = seeded(tmp_path, config)
        before = digest(ledger)
        done = run(tmp_path, "--config", str(config), "up")
    assert done.returncode == 1
    line = one_line(done)
    assert f"{table}.port {port}" in line and "already in use" in line
    assert digest(ledger) == before


@pytest.mark.parametrize(("table", "port"), [("channels.http", 70000), ("console", -1)])
def test_up_refuses_a_port_out_of_range(tmp_path: Path, table: str, port: int) -> None:
    config = write_config(tmp_path, f"[{table}]\nport = {port}\n")
    done = run(tmp_path, "up", "--config", str(config))
    assert done.returncode == 1
    assert f"{table}.port must be 0..65535" in one_line(done)


@pytest.mark.parametrize(
    ("extra", "key", "bound"),
    [
        ("[console]\nmax_file_bytes = 0", "console.max_file_bytes", ">= 1"),
        ("[console]\nmax_file_bytes = -5", "console.max_file_bytes", ">= 1"),
        ("[outbox]\nmax_parts = 0", "outbox.max_parts", ">= 1"),
        ("[outbox]\nmax_retries = -1", "outbox.max_retries", ">= 0"),
        ("[outbox]\nttl_seconds = 0", "outbox.ttl_seconds", "> 0"),
        ("[injection]\nsettle_ms = -10", "injection.settle_ms", ">= 0"),
        ("[ledger]\nretention_days = -1", "ledger.retention_days", "> 0"),
        ("[ledger]\nmax_attempts = 0", "ledger.max_attempts", ">= 1"),
        ("[channels.web]\nprogress_interval = 0", "channels.web.progress_interval", "> 0"),
        ("[mcp]\nmax_file_bytes = 0", "mcp.max_file_bytes", ">= 1"),
        ("[mcp]\nrate_per_minute = 0", "mcp.rate_per_minute", ">= 1"),
        ("[mcp.agents.main]\nmax_file_bytes = -1", "mcp.agents.main.max_file_bytes", ">= 1"),
    ],
)
def test_up_refuses_a_zero_or_negative_limit(
    tmp_path: Path, extra: str, key: str, bound: str
) -> None:
    if extra.startswith("[ledger]"):  # the table write_config already opens
        config = write_config(tmp_path)
        config.write_text(config.read_text().replace("[ledger]", extra, 1))
    else:
        config = write_config(tmp_path, extra)
    done = run(tmp_path, "up", "--config", str(config))
    assert done.returncode == 1
    line = one_line(done)
    assert f"{key} must be" in line and bound in line and "delete the line" in line
    assert not (tmp_path / "db" / "ledger.db").exists()  # nothing started, nothing written
    alive = subprocess.run(["tmux", "-L", socket_name(tmp_path), "list-sessions"], check=False)
    assert alive.returncode != 0


# ---------------------------------------------------------------------- read-only ledger


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable for this process: chmod, or (as root) the immutable flag."""
    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    immutable = False
    if os.access(path, os.W_OK):  # root ignores permissions
        flagged = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        immutable = flagged.returncode == 0
    try:
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a file read-only here (root without chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


@pytest.mark.parametrize("what", ["file", "directory"])
@pytest.mark.parametrize("command", [["send", "hello"], ["status"], ["up"]])
def test_read_only_ledger_is_one_line_naming_it(
    tmp_path: Path, what: str, command: list[str]
) -> None:
    config = write_config(tmp_path)
    ledger = seeded(tmp_path, config)
    for side in ("-wal", "-shm"):
        ledger.with_name(ledger.name + side).unlink(missing_ok=True)
    before = digest(ledger)
    with read_only(ledger if what == "file" else ledger.parent):
        done = run(tmp_path, *command, "--config", str(config))
    assert done.returncode == 1
    line = one_line(done)
    assert "read-only" in line and str(ledger if what == "file" else ledger.parent) in line
    assert digest(ledger) == before
    assert sorted(p.name for p in ledger.parent.iterdir()) == ["ledger.db"]
    assert [m[0] for m in ledger_messages(tmp_path)] == ["seed"]


def test_a_second_up_says_already_running_before_any_port(tmp_path: Path) -> None:
    from agentbridge.supervisor.lock import SupervisorLock

    with listening() as port:
        config = write_config(tmp_path, f"[console]\nport = {port}\n")
        ledger = seeded(tmp_path, config)
        lock = SupervisorLock(ledger)
        lock.acquire()  # as a running supervisor holds it
        try:
            done = run(tmp_path, "up", "--config", str(config))
        finally:
            lock.release()
    assert done.returncode == 1
    assert "already running" in one_line(done)
