"""A real ``agentbridge up`` in a subprocess, isolated by HOME, on a private tmux socket.

Tests talk to it the way users do: the CLI, the control socket, the ledger file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentbridge.config import load_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import Message
from agentbridge.testing import wait_until

REPO = Path(__file__).resolve().parents[1]


def default_agents(**overrides: Any) -> dict[str, dict[str, Any]]:
    """One demo agent with test-friendly timings."""
    agent: dict[str, Any] = {"runtime": "demo", "launch_grace": 20, "progress_timeout": 300}
    agent.update(overrides)
    return {"demo": agent}


def toml_value(value: Any) -> str:
    """Enough TOML for test configs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, tables: dict[str, Any]) -> None:
    """Write a nested dict as TOML (tables of tables, arrays of tables not needed)."""
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = {
            k: v
            for k, v in table.items()
            if not isinstance(v, dict) or not v or not all(isinstance(x, dict) for x in v.values())
        }
        nested = {k: v for k, v in table.items() if k not in scalars}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {toml_value(value)}")
        for key, value in nested.items():
            emit(f"{prefix}.{key}" if prefix else key, value)

    def is_array_of_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    top = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    for key, value in top.items():
        if not is_array_of_tables(value):
            lines.append(f"{key} = {toml_value(value)}")
    for key, value in tables.items():
        if isinstance(value, dict):
            emit(key, value)
    for key, value in top.items():  # [[routes]]
        if is_array_of_tables(value):
            for table in value:
                lines.append(f"[[{key}]]")
                lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")


class Bridge:
    """One supervisor subprocess plus helpers to drive and inspect it."""

    def __init__(
        self,
        root: Path,
        agents: dict[str, dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        console: bool = False,
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        self.socket = f"abt-{uuid.uuid4().hex[:10]}"
        self.config_path = root / "config.toml"
        tables: dict[str, Any] = {
            "state_dir": str(self.state_dir),
            "tmux_socket": self.socket,
            "ledger": {"path": str(self.state_dir / "ledger.db")},
            "console": {"enabled": console, "port": 0},
            "agents": agents if agents is not None else default_agents(),
        }
        tables.update(extra or {})
        for agent in tables["agents"].values():
            if "cwd" in agent:  # the user's project dir exists: `up` refuses a missing one
                Path(agent["cwd"]).expanduser().mkdir(parents=True, exist_ok=True)
        write_config(self.config_path, tables)
        self.config = load_config(self.config_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "bridge.stderr"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every command: HOME isolates config, data and logs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
        env.update(
            HOME=str(self.home), AGENTBRIDGE_CONFIG=str(self.config_path), PYTHONUNBUFFERED="1"
        )
        return env

    def start(self, wait_healthy: bool = True, crash_at: str | None = None) -> Bridge:
        """Run ``agentbridge up`` and wait until every agent is healthy.

        ``crash_at`` names a crash point (agentbridge.crashpoints) where it SIGKILLs itself.
        """
        self._stderr = self.log_path.open("ab")
        env = self.env
        if crash_at:
            env["AGENTBRIDGE_CRASH_AT"] = crash_at
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentbridge.cli", "up"],
            env=env,
            cwd=self.root,
            stdout=self._stderr,
            stderr=self._stderr,
            start_new_session=True,
        )
        if wait_healthy:
            self.wait_health("healthy")
        return self

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL; always kill our tmux server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    def kill9(self) -> None:
        """The bridge dies without a chance to clean up (its agents keep running)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run an ``agentbridge`` command against this bridge."""
        done = subprocess.run(
            [sys.executable, "-m", "agentbridge.cli", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"agentbridge {args} failed ({done.returncode}): "
                f"{done.stderr}\n--- bridge log:\n{self.log_tail()}"
            )
        return done

    def cli_argv(self) -> list[str]:
        """argv prefix of the agentbridge command."""
        return [sys.executable, "-m", "agentbridge.cli"]

    def send(self, text: str, *extra: str) -> int:
        """``agentbridge send``; the printed id."""
        return int(self.cli("send", *extra, "-", input=text).stdout.strip())

    def status(self) -> dict[str, Any]:
        """``agentbridge status --json``."""
        return dict(json.loads(self.cli("status", "--json").stdout))

    def wait_health(self, health: str, agent: str | None = None, timeout: float = 40) -> None:
        """Until the named (or every) agent shows ``health``."""

        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"bridge exited ({self.proc.returncode}):\n{self.log_tail()}")
            agents = self.status()["agents"]
            names = [agent] if agent else list(agents)
            return all(agents[n]["health"] == health for n in names)

        wait_until(check, timeout=timeout, interval=0.1, what=f"agents {health}")

    def messages(self) -> list[Message]:
        """Every message, straight from the ledger file."""

        async def read() -> list[Message]:
            ledger = await Ledger.open(self.config.ledger.path)
            try:
                return await ledger.list_messages(limit=100000)
            finally:
                await ledger.close()

        return asyncio.run(read())

    def message(self, message_id: int) -> Message:
        """One message."""
        return next(m for m in self.messages() if m.id == message_id)

    def wait_state(self, message_id: int, *states: str, timeout: float = 30) -> Message:
        """Until the message reaches one of ``states``."""

        def check() -> Message | None:
            msg = self.message(message_id)
            return msg if msg.state in states else None

        try:
            return wait_until(
                check, timeout=timeout, interval=0.05, what=f"message {message_id} in {states}"
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; now {self.message(message_id).state}\n{self.log_tail()}"
            ) from None

    def events(self, message_id: int) -> list[dict[str, Any]]:
        """The audit trail (``show --json``)."""
        return list(json.loads(self.cli("show", str(message_id), "--json").stdout)["events"])

    def byte_log(self) -> Path:
        """Where the demo agent logs raw input (when configured with --byte-log)."""
        return self.root / "bytes.log"

    def log_tail(self, lines: int = 60) -> str:
        """The end of the bridge's stderr and log file, for failure messages."""
        out = []
        with contextlib.suppress(OSError):
            out.append("\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]))
        logfile = self.home / ".local/state/agentbridge/log/agentbridge.log"
        with contextlib.suppress(OSError):
            out.append("\n".join(logfile.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def pane_pid(self, agent: str = "demo") -> int:
        """The agent process id."""
        pid = self.status()["agents"][agent]["pid"]
        assert isinstance(pid, int)
        return pid

    def capture(self, agent: str = "demo") -> str:
        """The agent's screen."""
        return subprocess.run(
            ["tmux", "-L", self.socket, "capture-pane", "-p", "-t", f"ab-{agent}"],
            capture_output=True,
            text=True,
        ).stdout


@contextlib.contextmanager
def running_bridge(root: Path, **kwargs: Any) -> Iterator[Bridge]:
    """A started bridge, stopped afterwards whatever happens."""
    bridge = Bridge(root, **kwargs)
    try:
        yield bridge.start()
    finally:
        bridge.stop()


def wait_for(predicate: Any, timeout: float = 20, what: str = "") -> Any:
    """Re-export for tests."""
    return wait_until(predicate, timeout=timeout, interval=0.05, what=what)


def now() -> float:
    """Monotonic seconds."""
    return time.monotonic()
