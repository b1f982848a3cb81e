"""A persistent tmux control-mode client (``tmux -C``) for fixed-argument commands.

Why: one tmux subprocess costs ~2.2 ms; a command over a control client already attached costs
~0.1 ms (field notes). The injector's hot path (capture the box, paste, Enter) is a handful of
such commands.

Hazard, and the rule that follows from it: control mode reads commands with tmux's command
parser, which expands ``$VAR`` and ``~``, splits on ``;``, starts comments at ``#`` and runs
``#(...)`` formats. So **no message text ever travels here**: every argument must match
:data:`SAFE_ARG` (no quote, space, ``$``, ``;``, ``\\``, ``(``, newline, non-ASCII) and is sent
single-quoted; :func:`command_line` refuses anything else. Message text reaches tmux through
``load-buffer`` reading a file or stdin (see :mod:`agentbridge.agent.tmux`).

Protocol handled here (tmux 3.2+): every command line the client sends produces exactly one
``%begin TIME NUMBER FLAGS`` … ``%end|%error TIME NUMBER FLAGS`` block, in order; anything else
outside a block starting with ``%`` is a notification (``%session-changed``, ``%window-add``,
``%exit`` …) and is ignored (``%exit`` and EOF mean the client is gone). Command output is *not*
escaped by tmux: a pane showing a line ``%end T N F`` could close a block early. Callers that
read foreign text (``capture-pane``) add a random nonce command after it and check it
(:meth:`ControlClient.run`'s ``nonce``); any protocol surprise closes the client.

The client lives in its own small session (``_abctl-PID-N``) created by the client itself with
``destroy-unattached on``: when the client goes (close, crash of the supervisor, EOF), its session
goes too, so it never keeps a tmux server alive on its own. It attaches with the client flags
``no-output`` (no ``%output`` floods from any pane) and ``ignore-size`` (its size never resizes
an agent's window), and it is attached to its own session only, so it never sees agents' output.

One command batch at a time (a lock), a timeout per batch. Two failure kinds:
:class:`ControlUnavailable` — nothing was sent, the caller may use a subprocess instead;
:class:`ControlUncertain` — sent, outcome unknown (timeout, client died): the client is closed;
a caller must not blindly repeat a command with side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import subprocess
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CONTROL_SESSION_PREFIX",
    "SAFE_ARG",
    "ControlClient",
    "ControlError",
    "ControlUnavailable",
    "ControlUncertain",
    "Reply",
    "command_line",
]

#: Arguments allowed in a control-mode command (sent single-quoted). Enough for pane ids,
#: buffer and session names, fixed key names, ``#{format}`` strings and our own file paths.
SAFE_ARG = re.compile(r"[A-Za-z0-9_%#{}|:,.=@+/-]{1,512}")
#: Commands the client may send: fixed-argument ones only (never ``send-keys -l``/``run-shell``).
ALLOWED_COMMANDS = frozenset(
    {
        "capture-pane",
        "delete-buffer",
        "display-message",
        "load-buffer",
        "paste-buffer",
        "send-keys",
        "set-option",
    }
)

#: Names of control clients' own sessions start with this (never an agent's ``ab-NAME``).
CONTROL_SESSION_PREFIX = "_abctl-"
_session_seq = itertools.count(1)
_GUARD = re.compile(r"%(begin|end|error) (\d+) (\d+) (\d+)")


class ControlError(RuntimeError):
    """Base of control-mode failures (never a tmux command's own error: see :class:`Reply`)."""


class ControlUnavailable(ControlError):
    """The command was not sent (no client, closed, refused): safe to run it another way."""


class ControlUncertain(ControlError):
    """The command was sent but its outcome is unknown; the client has been closed."""


@dataclass
class Reply:
    """One command's block: ``ok`` False for ``%error``; ``lines`` without the guard lines."""

    ok: bool
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def command_line(args: Sequence[str]) -> bytes:
    """One control-mode command line, every argument validated and single-quoted.

    Raises ValueError for anything that is not a fixed argument (message text never is).
    """
    if not args or args[0] not in ALLOWED_COMMANDS:
        raise ValueError(f"command not allowed in control mode: {args[:1]!r}")
    for arg in args[1:]:
        if not SAFE_ARG.fullmatch(arg) or "#(" in arg:
            raise ValueError(f"argument not allowed in control mode: {arg[:40]!r}")
    return (" ".join([args[0], *(f"'{a}'" for a in args[1:])]) + "\n").encode("ascii")


class ControlClient:
    """One ``tmux -C`` client process bound to the running event loop.

    Create with :meth:`connect`; :meth:`run` sends a batch of commands (one per line, pipelined)
    and returns one :class:`Reply` each.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> None:
        self._argv = list(argv)
        self._env = dict(env)
        self.timeout = timeout
        self.session = f"{CONTROL_SESSION_PREFIX}{os.getpid()}-{next(_session_seq)}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._out_fd = -1
        self._in_fd = -1
        self._buf = b""
        self._block: tuple[str, list[str]] | None = None  # (guard suffix, lines)
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self._lock = asyncio.Lock()
        self.closed = False
        self.close_reason = ""

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"ControlClient(session={self.session!r}, {state})"

    @property
    def alive(self) -> bool:
        return not self.closed and self._proc is not None

    @classmethod
    async def connect(
        cls, argv_prefix: Sequence[str], env: Mapping[str, str], timeout: float = 2.0
    ) -> ControlClient:
        """Start the client in its own new session and wait until it answers."""
        self = cls([], env, timeout)
        self._argv = [
            *argv_prefix,
            "-C",
            "new-session",
            "-s",
            self.session,
            "-f",
            "no-output,ignore-size",
            "-x",
            "20",
            "-y",
            "5",
            "--",
            "sleep",
            "2147483647",
        ]
        self.loop = asyncio.get_running_loop()
        # Popen, not asyncio's subprocess: plain pipes we read with add_reader and can close
        # from any loop state (also after the loop that started the client is gone).
        try:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - fork+exec only, no waiting
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=self._env,
                cwd="/",
                close_fds=True,
            )
        except OSError as exc:
            self.closed = True
            raise ControlUnavailable(f"cannot start tmux -C: {exc}") from exc
        # whatever happens to this object (a test's loop closed under it), the process goes
        weakref.finalize(self, _reap, self._proc)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in_fd = self._proc.stdin.fileno()
        self._out_fd = self._proc.stdout.fileno()
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._in_fd, False)
        # The new-session command itself answers with the first block.
        first: asyncio.Future[Reply] = self.loop.create_future()
        self._waiting.append(first)
        self.loop.add_reader(self._out_fd, self._on_readable)
        try:
            reply = await asyncio.wait_for(asyncio.shield(first), timeout)
            if not reply.ok:
                raise ControlUnavailable(f"tmux -C new-session failed: {reply.text}")
            # destroy-unattached: the session dies with this client, so it never keeps a tmux
            # server alive by itself.
            replies = await self.run(
                [["set-option", "-t", f"={self.session}:", "destroy-unattached", "on"]]
            )
            if not replies[0].ok:
                raise ControlUnavailable(f"set-option failed: {replies[0].text}")
        except (ControlError, TimeoutError) as exc:
            self.close(f"connect failed: {exc}")
            raise ControlUnavailable(f"tmux control client did not start: {exc}") from exc
        except BaseException:
            self.close("connect cancelled")
            raise
        return self

    # -- commands ---------------------------------------------------------------------------

    async def run(
        self,
        commands: Sequence[Sequence[str]],
        nonce: bool = False,
        timeout: float | None = None,
    ) -> list[Reply]:
        """Send ``commands`` (one per line, pipelined) and return their replies, in order.

        ``nonce``: append ``display-message -p RANDOM`` and check its reply, so output that
        contains forged guard lines (a pane's text) is detected; the nonce reply is dropped.
        Raises :class:`ControlUnavailable` when nothing was sent, :class:`ControlUncertain`
        when the outcome is unknown (the client is then closed).
        """
        lines = [command_line(c) for c in commands]
        token = ""
        if nonce:
            token = f"abnonce{secrets.token_hex(12)}"
            lines.append(command_line(["display-message", "-p", token]))
        async with self._lock:
            if not self.alive or self.loop is not asyncio.get_running_loop():
                raise ControlUnavailable(self.close_reason or "control client not usable")
            futures = [self.loop.create_future() for _ in lines]
            self._waiting.extend(futures)
            data = b"".join(lines)
            try:
                written = os.write(self._in_fd, data)
            except OSError as exc:
                written = -1
                reason = f"write failed: {exc}"
            else:
                reason = "short write"
            if written != len(data):
                self.close(reason)
                if written <= 0:
                    raise ControlUnavailable(reason)
                raise ControlUncertain(reason)
            try:
                replies = await asyncio.wait_for(
                    asyncio.gather(*futures), self.timeout if timeout is None else timeout
                )
            except TimeoutError:
                self.close("command timed out")
                raise ControlUncertain("tmux control command timed out") from None
            except ControlError as exc:
                raise ControlUncertain(str(exc)) from exc
            except BaseException:
                # cancelled mid-command: replies would arrive out of step; start afresh
                self.close("cancelled mid-command")
                raise
            if self.closed:  # the stream went out of step while these replies came in
                raise ControlUncertain(f"control-mode stream broken: {self.close_reason}")
        if nonce:
            last = replies.pop()
            if not last.ok or last.lines != [token]:
                self.close("nonce mismatch: forged guard line in command output?")
                raise ControlUncertain("control-mode reply failed its integrity check")
        return replies

    # -- protocol ---------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._out_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close(f"read failed: {exc}")
            return
        if not chunk:
            self.close("tmux control client exited")
            return
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for raw in lines:  # split on LF only: a CR inside a line is content
            if self.closed:
                break
            self._on_line(raw.decode("utf-8", errors="replace"))

    def _on_line(self, line: str) -> None:
        if self._block is not None:
            guard, lines = self._block
            if line in (f"%end {guard}", f"%error {guard}"):
                self._block = None
                self._deliver(Reply(ok=line.startswith("%end"), lines=lines))
            else:
                lines.append(line)
            return
        m = _GUARD.fullmatch(line)
        if m is not None and m.group(1) == "begin":
            self._block = (f"{m.group(2)} {m.group(3)} {m.group(4)}", [])
        elif line.startswith("%exit"):
            self.close("tmux control client detached (%exit)")
        elif line.startswith("%") and m is None:
            pass  # a notification: %session-changed, %window-add, %output (not asked for) ...
        else:
            # text outside a block, or a stray guard: output got out of step (forged guard?)
            self.close(f"unexpected control-mode line: {line[:60]!r}")

    def _deliver(self, reply: Reply) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():  # a cancelled waiter still owns its reply slot: skip it
                fut.set_result(reply)
                return
            if fut.cancelled():
                self.close("reply for a cancelled command")
                return
        self.close("unsolicited control-mode block")

    # -- teardown ---------------------------------------------------------------------------

    def close(self, reason: str = "closed") -> None:
        """Stop the client (its session goes with it); fail pending commands. Idempotent, sync,
        safe from any loop state (also when the loop it was bound to is closed)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        loop = self.loop
        if self._out_fd >= 0 and loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.remove_reader(self._out_fd)
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done() and not fut.get_loop().is_closed():
                fut.set_exception(ControlUncertain(f"tmux control client gone: {reason}"))
                fut.exception()  # mark retrieved: nobody may be waiting any more
        self._in_fd = self._out_fd = -1
        if self._proc is not None:
            _reap(self._proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Close the pipes, stop the client (its session goes with it) and collect its status."""
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    if proc.returncode is not None:
        return
    with contextlib.suppress(OSError):
        proc.terminate()
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)
