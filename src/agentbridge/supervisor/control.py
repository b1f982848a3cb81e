"""The supervisor's control socket: a Unix socket (mode 0600) speaking one JSON line each way.

The CLI uses it to wake the dispatcher after writing to the ledger from another process, and
to read live health for ``status``. Anyone who can open the socket controls the bridge, hence
the 0600 mode inside a 0700 directory.
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

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_MAX_SUN_PATH = 100  # sockaddr_un.sun_path is 104 bytes on macOS, 108 on Linux


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
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
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
            handler = self.handlers.get(str(request.get("cmd")))
            if handler is None:
                response: dict[str, Any] = {"ok": False, "error": "unknown command"}
            else:
                response = {"ok": True, **(await handler(request))}
        except Exception as exc:  # a bad client must never hurt the supervisor
            log.warning("control request failed: %s", exc)
            response = {"ok": False, "error": str(exc)}
        try:
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def request(
    config: Config, cmd: str, timeout: float = 5.0, **fields: Any
) -> dict[str, Any] | None:
    """Send one request to the running supervisor; None when none is running."""
    path = socket_path(config)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path)), timeout=timeout
        )
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=timeout)
        return dict(json.loads(line)) if line else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def poke_supervisor(config: Config) -> bool:
    """Wake a running supervisor's dispatcher and relay now (best effort; it also sweeps)."""
    return (await request(config, "poke", timeout=1.0)) is not None
