"""agentbridge's own tmux server on a private socket (``tmux -L NAME``).

Why a private socket: any process of the same user that reaches a tmux socket can send keys and
read buffers, so the bridge never shares the user's default server.

Why the tmux binary and not libtmux on the hot path: one short subprocess per operation (~2 ms),
commands chained with a separate ``;`` argv element, and message text only ever travels through
``load-buffer -`` on stdin, never argv (argv text is split on ``;``, turned into key names by
``send-keys`` and capped at ~16 KB). libtmux is offered for read-only lookups (:meth:`libtmux`).

Options chosen for the server:

- ``remain-on-exit on`` (global): when an agent dies its pane stays, so the host can read
  ``pane_dead_status`` and capture the last screen for the report; :meth:`kill_session` removes it.
- ``exit-empty`` left on: killing the last session stops the server.
- The server is started by a client running with a minimal environment (:func:`minimal_env`), so
  nothing of the supervisor's environment is copied into tmux's global environment, and each pane
  command runs under ``env -i K=V ... -- argv``: the pane's environment is exactly the ``env``
  given (tmux's own ``TMUX``/``TMUX_PANE``/``TERM`` are not added — pass ``TERM`` yourself).

Addressing unit: pane ids (``%N``), unique for the server's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED_KEYS",
    "TmuxError",
    "TmuxNotFound",
    "TmuxServer",
    "minimal_env",
]

#: Fixed keys :meth:`TmuxServer.send_key` accepts. Never message text.
ALLOWED_KEYS = frozenset({"Enter", "C-u", "C-c", "Escape", "BSpace", "Up", "Down", "Tab", "y", "n"})

_buffer_seq = itertools.count(1)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# tmux rewrites "." and ":" in session names (they are target syntax); refuse rather than guess.
_SESSION_NAME = re.compile(r"[A-Za-z0-9_@+-]{1,100}")


class TmuxError(RuntimeError):
    """A tmux command failed; the message carries tmux's own stderr line."""


class TmuxNotFound(TmuxError):
    """The tmux binary is not on PATH."""

    def __init__(self) -> None:
        super().__init__("tmux not found on PATH: install tmux (>= 3.2) to run agents")


def minimal_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment tmux clients (and so the server) run with: PATH, a UTF-8 locale, socket dir.

    Why: the server copies its starting client's environment into its global environment; keeping
    it minimal means no secret of the supervisor can reach a pane by accident.
    """
    src = os.environ if base is None else base
    env = {
        "PATH": src.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    if "TMUX_TMPDIR" in src:
        env["TMUX_TMPDIR"] = src["TMUX_TMPDIR"]
    return env


class TmuxServer:
    """Our tmux server on socket ``socket_name``; every method is one tmux subprocess."""

    def __init__(self, socket_name: str, tmux_bin: str | None = None) -> None:
        if not socket_name or "/" in socket_name:
            raise ValueError(f"bad socket name: {socket_name!r}")
        found = shutil.which(tmux_bin or "tmux")
        if found is None:
            raise TmuxNotFound()
        self.socket_name = socket_name
        self.tmux_bin = found
        self._env = minimal_env()

    def __repr__(self) -> str:
        return f"TmuxServer(socket_name={self.socket_name!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _argv(self, args: Sequence[str]) -> list[str]:
        # -u: UTF-8 whatever the locale; -L: our private socket; -f /dev/null: the user's
        # ~/.tmux.conf must not change how our server behaves.
        return [self.tmux_bin, "-u", "-f", "/dev/null", "-L", self.socket_name, *args]

    async def run(
        self, *args: str, stdin: bytes | None = None, check: bool = True
    ) -> tuple[int, str, str]:
        """Run one tmux client command; returns (returncode, stdout, stderr)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(args),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd="/",
            )
        except FileNotFoundError as exc:
            raise TmuxNotFound() from exc
        out, err = await proc.communicate(stdin)
        rc = proc.returncode if proc.returncode is not None else -1
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace").strip()
        if check and rc != 0:
            raise TmuxError(f"tmux {args[0] if args else ''} failed ({rc}): {stderr}")
        return rc, stdout, stderr

    def libtmux(self) -> Any:
        """A ``libtmux.Server`` on the same socket, for read-only lookups (never to start it)."""
        import libtmux

        return libtmux.Server(socket_name=self.socket_name)

    # -- sessions ---------------------------------------------------------------------------

    async def new_session(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | Path,
        width: int = 200,
        height: int = 50,
    ) -> str:
        """Start ``argv`` in a new detached session ``name``; return its pane id (``%N``).

        The pane's environment is exactly ``env`` (via ``env -i``).
        """
        if not _SESSION_NAME.fullmatch(name):
            raise ValueError(f"bad session name (use [A-Za-z0-9_@+-]): {name!r}")
        if not argv:
            raise ValueError("argv is empty")
        if "=" in argv[0]:
            raise ValueError("argv[0] must not contain '=' (env would take it as a variable)")
        for key, value in env.items():
            if not _ENV_NAME.fullmatch(key) or "\0" in value:
                raise ValueError(f"bad environment variable: {key!r}")
        pairs = [f"{k}={v}" for k, v in env.items()]
        _, out, _ = await self.run(
            "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-P", "-F", "#{pane_id}",
            "-s", name, "-x", str(width), "-y", str(height), "-c", str(cwd),
            "--", "env", "-i", *pairs, *argv,
        )  # fmt: skip
        pane_id = out.strip().splitlines()[-1] if out.strip() else ""
        if not pane_id.startswith("%"):
            raise TmuxError(f"new-session returned no pane id: {out!r}")
        return pane_id

    async def has_session(self, name: str) -> bool:
        """True when session ``name`` exists (exact name match)."""
        rc, _, _ = await self.run("has-session", "-t", f"={name}", check=False)
        return rc == 0

    async def kill_session(self, name: str) -> bool:
        """Kill session ``name``; False when there was none."""
        rc, _, _ = await self.run("kill-session", "-t", f"={name}", check=False)
        return rc == 0

    @property
    def socket_path(self) -> Path:
        """Where tmux puts our socket: ``${TMUX_TMPDIR:-/tmp}/tmux-UID/NAME``."""
        base = self._env.get("TMUX_TMPDIR") or "/tmp"
        return Path(base) / f"tmux-{os.getuid()}" / self.socket_name

    async def kill_server(self) -> None:
        """Stop our server (all sessions) and remove its socket file (tmux 3.3a leaves it).

        A server that is not running is fine.
        """
        await self.run("kill-server", check=False)
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                self.socket_path.unlink()

    # -- panes ------------------------------------------------------------------------------

    async def _pane_format(self, pane_id: str, fmt: str) -> str | None:
        rc, out, _ = await self.run("display-message", "-p", "-t", pane_id, fmt, check=False)
        return out.rstrip("\n") if rc == 0 else None

    async def pane_pid(self, pane_id: str) -> int | None:
        """PID of the pane's process (the agent, after ``env`` exec'd it); None if no such pane."""
        value = await self._pane_format(pane_id, "#{pane_pid}")
        return int(value) if value and value.isdigit() else None

    async def pane_alive(self, pane_id: str) -> bool:
        """True when the pane exists and its process has not exited."""
        return await self._pane_format(pane_id, "#{pane_dead}") == "0"

    async def pane_dead_status(self, pane_id: str) -> int | None:
        """Exit status of a dead pane's process; None while alive, unknown, or no such pane.

        Best effort: tmux 3.3a sometimes marks a pane dead (pty closed) without ever recording
        the status (seen ~1 in 3 fast exits here), so None after death means "exited, status
        unknown" — use other evidence (transcript, screen) for the cause.
        """
        value = await self._pane_format(pane_id, "#{pane_dead}|#{pane_dead_status}")
        if value is None:
            return None
        dead, _, status = value.partition("|")
        if dead != "1":
            return None
        try:
            return int(status)
        except ValueError:
            return None

    async def capture(self, pane_id: str, escapes: bool = False, history: int = 0) -> str:
        """The pane's visible screen as text; ``history`` more lines of scrollback above it.

        ``escapes=True`` keeps SGR attributes (dim placeholder text, colours). A dead pane's
        "Pane is dead" line scrolls its last screen up by one: ask for some history there.
        """
        args = ["capture-pane", "-p", "-t", pane_id]
        if escapes:
            args.append("-e")
        if history > 0:
            args += ["-S", str(-history)]
        _, out, _ = await self.run(*args)
        return out

    async def capture_if_alive(self, pane_id: str, escapes: bool = False) -> str | None:
        """The visible screen, or None when the pane is dead or gone — one tmux call.

        Why: a dead pane kept by ``remain-on-exit`` still shows the agent's last screen, input
        box included; nothing must be pasted into it.
        """
        rc, out, _ = await self.run(
            "display-message", "-p", "-t", pane_id, "#{pane_dead}", ";",
            "capture-pane", "-p", *(["-e"] if escapes else []), "-t", pane_id,
            check=False,
        )  # fmt: skip
        flag, _, screen = out.partition("\n")
        if rc != 0 or flag != "0":
            return None
        return screen

    # -- input ------------------------------------------------------------------------------

    async def load_and_paste(self, pane_id: str, text: str) -> None:
        """Paste ``text`` into the pane as one bracketed paste, text via stdin only.

        One tmux invocation: ``load-buffer -b NAME -`` ; ``paste-buffer -p -d -b NAME -t PANE``.
        ``-p`` lets tmux add the paste markers only if the app asked for bracketed paste; tmux
        turns LF into CR inside the paste (as terminals do). The caller sanitizes first.
        """
        data = text.encode("utf-8")
        if not data:
            raise ValueError("nothing to paste")
        name = f"agentbridge-{os.getpid()}-{next(_buffer_seq)}"
        rc, _, err = await self.run(
            "load-buffer", "-b", name, "-", ";",
            "paste-buffer", "-p", "-d", "-b", name, "-t", pane_id,
            stdin=data, check=False,
        )  # fmt: skip
        if rc != 0:
            await self.run("delete-buffer", "-b", name, check=False)
            raise TmuxError(f"paste into {pane_id} failed: {err}")

    async def send_enter(self, pane_id: str) -> None:
        """Press Enter in the pane, as its own tmux command."""
        await self.run("send-keys", "-t", pane_id, "Enter")

    async def send_key(self, pane_id: str, key: str) -> None:
        """Press one fixed key from :data:`ALLOWED_KEYS` (e.g. ``C-u``); never message text."""
        if key not in ALLOWED_KEYS:
            raise ValueError(f"key not allowed: {key!r}")
        await self.run("send-keys", "-t", pane_id, key)
