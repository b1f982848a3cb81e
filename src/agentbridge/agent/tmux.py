"""agentbridge's own tmux server on a private socket (``tmux -L NAME``).

Why a private socket: any process of the same user that reaches a tmux socket can send keys and
read buffers, so the bridge never shares the user's default server.

Options chosen for the server:

- ``remain-on-exit on`` (global): when an agent dies its pane stays, so the host can read
  ``pane_dead_status`` and capture the last screen for the report; :meth:`kill_session` removes it.
- ``exit-empty`` left on: killing the last session stops the server.
- The server is started by a client running with a minimal environment (:func:`minimal_env`), so
  nothing of the supervisor's environment is copied into tmux's global environment, and each pane
  command runs under ``env -i K=V ... -- argv``: the pane's environment is exactly the ``env``
  given (tmux's own ``TMUX``/``TMUX_PANE``/``TERM`` are not added — pass ``TERM`` yourself).

Addressing unit: pane ids (``%N``), unique for the server's lifetime.

How a command reaches the server (control client or subprocess) is
:mod:`agentbridge.agent.tmux_transport`; this module is what we ask of it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentbridge.agent.control_mode import ControlUncertain, Reply
from agentbridge.agent.tmux_transport import (
    CONTROL_ENV,
    SUBPROCESS_TIMEOUT,
    TmuxError,
    TmuxNotFound,
    TmuxTransport,
    minimal_env,
)

__all__ = [
    "ALLOWED_KEYS",
    "CONTROL_ENV",
    "SUBPROCESS_TIMEOUT",
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
_PANE_ID = re.compile(r"%[0-9]{1,9}")


class TmuxServer(TmuxTransport):
    """Our tmux server: sessions, panes, screens and input, each one method."""

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
        self._ctl_hold = False
        await self._ensure_control()
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

        A server that is not running is fine. No control client reconnects until the next
        :meth:`new_session`.
        """
        self._ctl_hold = True
        self.close_control()
        await self.run("kill-server", check=False)
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                self.socket_path.unlink()

    # -- panes ------------------------------------------------------------------------------

    async def _pane_format(self, pane_id: str, fmt: str) -> str | None:
        if _PANE_ID.fullmatch(pane_id):
            with contextlib.suppress(ControlUncertain):  # a read: the subprocess re-runs it
                replies = await self._ctl_run([["display-message", "-p", "-t", pane_id, fmt]])
                if replies is not None:
                    return replies[0].text.rstrip("\n") if replies[0].ok else None
        rc, out, _ = await self.run("display-message", "-p", "-t", pane_id, fmt, check=False)
        if rc == 0:
            await self._fell_back()
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
        if _PANE_ID.fullmatch(pane_id):
            with contextlib.suppress(ControlUncertain):
                replies = await self._ctl_run([args], nonce=True)
                if replies is not None:
                    if not replies[0].ok:
                        raise TmuxError(f"tmux capture-pane failed: {replies[0].text}")
                    return _screen(replies[0])
        _, out, _ = await self.run(*args)
        await self._fell_back()
        return out

    async def capture_if_alive(self, pane_id: str, escapes: bool = False) -> str | None:
        """The visible screen, or None when the pane is dead or gone — one tmux call.

        Why: a dead pane kept by ``remain-on-exit`` still shows the agent's last screen, input
        box included; nothing must be pasted into it.
        """
        capture = ["capture-pane", "-p", *(["-e"] if escapes else []), "-t", pane_id]
        if _PANE_ID.fullmatch(pane_id):
            with contextlib.suppress(ControlUncertain):
                replies = await self._ctl_run(
                    [["display-message", "-p", "-t", pane_id, "#{pane_dead}"], capture],
                    nonce=True,
                )
                if replies is not None:
                    dead, shot = replies
                    if not dead.ok or dead.text != "0" or not shot.ok:
                        return None
                    return _screen(shot)
        rc, out, _ = await self.run(
            "display-message", "-p", "-t", pane_id, "#{pane_dead}", ";", *capture, check=False
        )
        flag, _, screen = out.partition("\n")
        if rc != 0 or flag != "0":
            return None
        await self._fell_back()
        return screen

    # -- input ------------------------------------------------------------------------------

    async def load_and_paste(self, pane_id: str, text: str) -> None:
        """Paste ``text`` into the pane as one bracketed paste, text via stdin only.

        Over the control client: the text goes into a fresh 0600 temp file,
        ``load-buffer -b NAME PATH`` (the file is deleted once tmux has read it), then
        ``paste-buffer -p -d -b NAME -t PANE``. Otherwise one tmux invocation: ``load-buffer -b
        NAME -`` (text on stdin) ; ``paste-buffer …``. ``-p`` lets tmux add the paste markers
        only if the app asked for bracketed paste; tmux turns LF into CR inside the paste (as
        terminals do). The caller sanitizes first.
        """
        data = text.encode("utf-8")
        if not data:
            raise ValueError("nothing to paste")
        name = f"agentbridge-{os.getpid()}-{next(_buffer_seq)}"
        if _PANE_ID.fullmatch(pane_id) and await self._paste_over_control(pane_id, name, data):
            return
        rc, _, err = await self.run(
            "load-buffer", "-b", name, "-", ";",
            "paste-buffer", "-p", "-d", "-b", name, "-t", pane_id,
            stdin=data, check=False,
        )  # fmt: skip
        if rc != 0:
            await self.run("delete-buffer", "-b", name, check=False)
            raise TmuxError(f"paste into {pane_id} failed: {err}")
        await self._fell_back()

    async def _paste_over_control(self, pane_id: str, name: str, data: bytes) -> bool:
        """Load ``data`` from a private file and paste it, over the control client.

        True when pasted; False when nothing reached the pane and the subprocess path must run
        (no client, file unusable, load failed or unknown). Raises TmuxError when the paste
        itself failed (e.g. no such pane), as the subprocess path would.
        """
        if self._live_control() is None:
            return False
        path = self._paste_file(data)
        if path is None:
            return False
        try:
            loaded = await self._ctl_run([["load-buffer", "-b", name, path]])
        except ControlUncertain:
            loaded = None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if loaded is None or not loaded[0].ok:
            # the buffer may exist (load done, reply lost): remove it, then the subprocess path
            await self.run("delete-buffer", "-b", name, check=False)
            return False
        paste = ["paste-buffer", "-p", "-d", "-b", name, "-t", pane_id]
        try:
            pasted = await self._ctl_run([paste])
        except ControlUncertain:
            # Sent, outcome unknown. paste-buffer -d deletes the buffer in the same step as it
            # pastes: if we can still delete it, the paste did not happen and now cannot.
            rc, _, err = await self.run("delete-buffer", "-b", name, check=False)
            if rc == 0:
                return False
            if "unknown buffer" in err or "no buffer" in err:
                return True
            raise TmuxError(f"paste into {pane_id}: outcome unknown ({err})") from None
        if pasted is None:  # not sent: the buffer is loaded, paste it by subprocess
            rc, _, err = await self.run(*paste, check=False)
            if rc != 0:
                await self.run("delete-buffer", "-b", name, check=False)
                raise TmuxError(f"paste into {pane_id} failed: {err}")
            return True
        if not pasted[0].ok:
            await self.run("delete-buffer", "-b", name, check=False)
            raise TmuxError(f"paste into {pane_id} failed: {pasted[0].text}")
        return True

    async def send_enter(self, pane_id: str) -> None:
        """Press Enter in the pane, as its own tmux command."""
        await self._send_fixed_key(pane_id, "Enter")

    async def send_key(self, pane_id: str, key: str) -> None:
        """Press one fixed key from :data:`ALLOWED_KEYS` (e.g. ``C-u``); never message text."""
        if key not in ALLOWED_KEYS:
            raise ValueError(f"key not allowed: {key!r}")
        await self._send_fixed_key(pane_id, key)

    async def _send_fixed_key(self, pane_id: str, key: str) -> None:
        if _PANE_ID.fullmatch(pane_id):
            try:
                replies = await self._ctl_run([["send-keys", "-t", pane_id, key]])
            except ControlUncertain as exc:
                # never press a key twice: an Enter too many can answer a dialog
                raise TmuxError(f"send-keys {key} to {pane_id}: outcome unknown ({exc})") from None
            if replies is not None:
                if not replies[0].ok:
                    raise TmuxError(f"tmux send-keys failed: {replies[0].text}")
                return
        await self.run("send-keys", "-t", pane_id, key)
        await self._fell_back()


def _screen(reply: Reply) -> str:
    """A ``capture-pane -p`` reply as the subprocess prints it: every line ends with LF."""
    return "".join(line + "\n" for line in reply.lines)
