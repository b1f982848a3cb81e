"""The supervisor's control socket: a Unix socket (mode 0600) speaking one JSON line each way.

The CLI sends its writes through it (``control_ops``: the supervisor calls the ledger method
and answers the record), reads live health for ``status``, and asks for restarts. Anyone who
can open the socket controls the bridge, hence the 0600 mode inside a 0700 directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge.config import Config

log = logging.getLogger(__name__)

UNKNOWN_COMMAND = "unknown command"  #: also what an older supervisor answers a new command

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_MAX_SUN_PATH = 100  # sockaddr_un.sun_path is 104 bytes on macOS, 108 on Linux
#: longest request line served: a message text travels in it (a longer one is refused)
MAX_REQUEST = 64 * 1024 * 1024


class NoSupervisor(Exception):
    """Nothing was sent: no supervisor listens (or it refused before reading a byte)."""


class NoAnswer(Exception):
    """The request was sent but no answer came: it may or may not have taken effect."""


def socket_path(config: Config) -> Path:
    """Where the control socket of this ledger lives (short enough for sun_path)."""
    preferred = config.state_dir / "control.sock"
    if len(str(preferred)) < _MAX_SUN_PATH:
        return preferred
    digest = hashlib.sha256(str(config.ledger.path).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"agentbridge-{os.getuid()}-{digest}.sock"


class ControlServer:
    """Serves ``{"cmd": NAME, ...}`` requests with the registered handlers."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind the socket (replacing a stale one: the supervisor lock proves it is ours)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        self.path.chmod(0o600)

    async def stop(self) -> None:
        """Close the socket and remove its file."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            request = json.loads(line or b"{}")
            if not isinstance(request, dict):
                raise ValueError("a request is one JSON object")
            handler = self.handlers.get(str(request.get("cmd")))
            if handler is None:
                response: dict[str, Any] = {"ok": False, "error": UNKNOWN_COMMAND}
            else:
                response = {"ok": True, **(await handler(request))}
        except Exception as exc:  # a bad client must never hurt the supervisor
            log.warning("control request failed: %s", exc)
            response = {"ok": False, "error": str(exc)}
        try:
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await writer.drain()
        except OSError:  # the client went away before its answer: its loss, not ours
            log.debug("control client left before its answer")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def call(config: Config, cmd: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """One request to the running supervisor, telling apart "nothing was sent"
    (``NoSupervisor``: safe to do it another way) from "sent, no answer" (``NoAnswer``: it may
    have happened, so only an idempotent request may be done again)."""
    payload = json.dumps({"cmd": cmd, **fields}).encode() + b"\n"
    if len(payload) > MAX_REQUEST:
        raise NoSupervisor(f"request of {len(payload)} bytes is over the socket's limit")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket_path(config)), limit=MAX_REQUEST),
            timeout=timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise NoSupervisor(str(exc)) from exc
    try:
        writer.write(payload)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=timeout)
        answer = json.loads(line) if line else None
    except (OSError, TimeoutError, ValueError) as exc:
        raise NoAnswer(str(exc) or type(exc).__name__) from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not isinstance(answer, dict):
        raise NoAnswer("the supervisor closed the socket without an answer")
    return answer


async def request(
    config: Config, cmd: str, timeout: float = 5.0, **fields: Any
) -> dict[str, Any] | None:
    """Send one request to the running supervisor; None when none is running (or answers)."""
    try:
        return await call(config, cmd, timeout, **fields)
    except (NoSupervisor, NoAnswer):
        return None


async def poke_supervisor(config: Config) -> bool:
    """Wake a running supervisor's dispatcher and relay now (best effort; it also sweeps)."""
    return (await request(config, "poke", timeout=1.0)) is not None
