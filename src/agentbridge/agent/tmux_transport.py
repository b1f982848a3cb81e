"""How one tmux command reaches our private server: a persistent control client, or a subprocess.

Why the tmux binary and not libtmux on the hot path: one short subprocess per operation (~2 ms),
commands chained with a separate ``;`` argv element, and message text only ever travels through
``load-buffer -`` on stdin, never argv (argv text is split on ``;``, turned into key names by
``send-keys`` and capped at ~16 KB). libtmux is offered for read-only lookups (:meth:`libtmux`).

Fast path (:mod:`agentbridge.agent.control_mode`): unless disabled
(``TmuxServer(..., control=False)``
or ``AGENTBRIDGE_TMUX_CONTROL=0``), a persistent ``tmux -C`` client runs the fixed-argument
commands of the hot path — ``capture-pane``, ``display-message -p``, ``send-keys`` of a fixed
key, ``load-buffer``/``paste-buffer``/``delete-buffer`` of our own buffer — in ~0.1 ms instead of
a ~2 ms subprocess each. Message text never goes into a control-mode command (its parser expands
``$VAR`` and splits on ``;`` and ``#``): it is written to a fresh 0600 temp file (``mkstemp``) that
``load-buffer -b NAME PATH`` reads and that is deleted at once (or, without control mode,
sent on a subprocess's stdin). Correctness never depends on the control client: when it is not
connected (not yet, died, tmux restarted, another event loop) the subprocess path runs and the
client reconnects after the next successful subprocess call; reads that fail mid-way are re-run
by subprocess; a command with side effects whose outcome is unknown is never repeated blindly
(a paste is settled by whether its buffer still exists; a key press raises :class:`TmuxError`).

The server is started by a client running with a minimal environment (:func:`minimal_env`), so
nothing of the supervisor's environment is copied into tmux's global environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from agentbridge.agent.control_mode import (
    SAFE_ARG,
    ControlClient,
    ControlUnavailable,
    ControlUncertain,
    Reply,
)

__all__ = [
    "CONTROL_ENV",
    "SUBPROCESS_TIMEOUT",
    "TmuxError",
    "TmuxNotFound",
    "TmuxTransport",
    "minimal_env",
]

#: Set to 0/false/no/off to keep every tmux command a subprocess.
CONTROL_ENV = "AGENTBRIDGE_TMUX_CONTROL"
#: After a failed control-client start, wait this long before trying again (seconds).
_RECONNECT_BACKOFF = 5.0
#: one tmux client command never takes this long unless the server hangs
SUBPROCESS_TIMEOUT = 15.0


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


def _control_default() -> bool:
    return os.environ.get(CONTROL_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class TmuxTransport:
    """Runs tmux commands on socket ``socket_name``: over a control client when one is
    connected (hot path), otherwise one tmux subprocess per command."""

    def __init__(
        self,
        socket_name: str,
        tmux_bin: str | None = None,
        control: bool | None = None,
        control_timeout: float = 2.0,
    ) -> None:
        """``control``: use a persistent ``tmux -C`` client for the hot path (default: on
        unless ``AGENTBRIDGE_TMUX_CONTROL=0``); ``control_timeout``: seconds per command."""
        if not socket_name or "/" in socket_name:
            raise ValueError(f"bad socket name: {socket_name!r}")
        found = shutil.which(tmux_bin or "tmux")
        if found is None:
            raise TmuxNotFound()
        self.socket_name = socket_name
        self.tmux_bin = found
        self._env = minimal_env()
        self.control_enabled = _control_default() if control is None else control
        self.control_timeout = control_timeout
        #: how the hot path went: "control", "subprocess", "connects", "connect_failed",
        #: "uncertain" (for tests and benchmarks)
        self.control_stats: Counter[str] = Counter()
        self._ctl: ControlClient | None = None
        self._ctl_connecting = False
        self._ctl_retry_at = 0.0
        # kill_server() holds reconnection until new_session(): a control client's own session
        # must never start a tmux server nobody asked for.
        self._ctl_hold = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(socket_name={self.socket_name!r})"

    # -- subprocess -------------------------------------------------------------------------

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
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=SUBPROCESS_TIMEOUT)
        except TimeoutError:  # a hung tmux server must not hang the supervisor with it
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise TmuxError(
                f"tmux {args[0] if args else ''} did not answer within {SUBPROCESS_TIMEOUT:.0f}s"
            ) from None
        rc = proc.returncode if proc.returncode is not None else -1
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace").strip()
        if check and rc != 0:
            raise TmuxError(f"tmux {args[0] if args else ''} failed ({rc}): {stderr}")
        return rc, stdout, stderr

    # -- control client ---------------------------------------------------------------------

    @property
    def control_connected(self) -> bool:
        """True when a control client is attached (in whatever event loop started it)."""
        return self._ctl is not None and self._ctl.alive

    def _live_control(self) -> ControlClient | None:
        ctl = self._ctl
        if ctl is None:
            return None
        if ctl.alive and ctl.loop is asyncio.get_running_loop():
            return ctl
        ctl.close("stale (died, or another event loop)")
        self._ctl = None
        return None

    async def _ctl_run(
        self, commands: Sequence[Sequence[str]], nonce: bool = False
    ) -> list[Reply] | None:
        """Run over the control client; None when it was not sent (use a subprocess).

        Raises ControlUncertain when sent but the outcome is unknown."""
        ctl = self._live_control()
        if ctl is None:
            return None
        try:
            replies = await ctl.run(commands, nonce=nonce)
        except ControlUnavailable:
            return None
        except ControlUncertain:
            self.control_stats["uncertain"] += 1
            self._ctl = None
            raise
        self.control_stats["control"] += 1
        return replies

    async def _ensure_control(self) -> None:
        """Start a control client if none is usable; called only after a tmux command just
        succeeded (so a server is running) and never while a previous attempt is backing off."""
        if not self.control_enabled or self._ctl_hold or self._ctl_connecting:
            return
        if self._live_control() is not None or time.monotonic() < self._ctl_retry_at:
            return
        self._ctl_connecting = True
        try:
            ctl = await ControlClient.connect(self._argv([]), self._env, self.control_timeout)
        except ControlUnavailable:
            self.control_stats["connect_failed"] += 1
            self._ctl_retry_at = time.monotonic() + _RECONNECT_BACKOFF
            return
        finally:
            self._ctl_connecting = False
        if self._ctl_hold:  # kill_server() ran meanwhile
            ctl.close("server killed while connecting")
            return
        self.control_stats["connects"] += 1
        self._ctl = ctl

    async def _fell_back(self) -> None:
        self.control_stats["subprocess"] += 1
        await self._ensure_control()

    def close_control(self) -> None:
        """Stop the control client (its own session goes with it). The next successful tmux
        command starts a new one unless :meth:`kill_server` ran."""
        if self._ctl is not None:
            self._ctl.close("closed by owner")
            self._ctl = None

    def _paste_file(self, data: bytes) -> str | None:
        """Write ``data`` to a fresh 0600 temp file (``mkstemp``: O_EXCL, random name) in the
        per-user runtime dir if there is one, else the temp dir; None if unusable.

        The path (ours, validated) is what goes into the control-mode command, never the text;
        the caller deletes the file as soon as tmux has read it.
        """
        base = os.environ.get("XDG_RUNTIME_DIR")
        if not base or not os.path.isdir(base) or not os.access(base, os.W_OK):
            base = None
        try:
            fd, path = tempfile.mkstemp(prefix="agentbridge-paste-", dir=base)
        except OSError:
            return None
        try:
            if not SAFE_ARG.fullmatch(path):
                raise OSError("temp path not usable in a control-mode command")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        finally:
            os.close(fd)
        return path

    def libtmux(self) -> Any:
        """A ``libtmux.Server`` on the same socket, for read-only lookups (never to start it)."""
        import libtmux

        return libtmux.Server(socket_name=self.socket_name)
