"""One supervisor per ledger: an exclusive lock file next to it, naming its holder."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["SupervisorError", "SupervisorLock"]


class SupervisorError(Exception):
    """Startup cannot proceed; ``str()`` is one line for the user."""


class SupervisorLock:
    """An exclusive lock next to the ledger: a second supervisor refuses to start."""

    def __init__(self, ledger_path: Path) -> None:
        self.path = ledger_path.with_name(ledger_path.name + ".supervisor.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``SupervisorError`` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SupervisorError(
                f"another agentbridge supervisor (pid {holder}) is already running for this"
                f" ledger ({self.path.with_suffix('')}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None
