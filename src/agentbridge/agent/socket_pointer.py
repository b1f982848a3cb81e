"""The control-socket pointer files: where a process the supervisor did not start finds its socket.

The socket's path is not fixed (``supervisor/control.py`` moves it to the temp dir when the
state dir is too deep for ``sun_path``), so the supervisor writes it into two files that
programs an agent's CLI starts read back:

- ``<state_dir>/control-socket``, the bridge's, read by the permission hook
  (``agent/permission_hook.py``);
- ``<state_dir>/agents/<name>/control-socket``, one per agent, read when its MCP registration
  is written (``runtimes/mcp_server.py``): a runtime profile knows its agent's state dir, not
  the supervisor's config.

Both are written the same way (0600, in a 0700 dir, replaced whole so a reader never sees a
half-written path) and read the same way: a missing, unreadable or empty file means the
default place, ``<state_dir>/control.sock``. Stdlib only: the permission hook imports it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

POINTER = "control-socket"  #: the pointer file's name, in the bridge's and each agent's state dir
DEFAULT_SOCKET = "control.sock"  #: the socket's own name in the state dir (when short enough)


def write_pointer(directory: Path, socket: str | os.PathLike[str]) -> Path:
    """Name ``socket`` in ``directory``'s pointer file (made 0700 if missing); the file is 0600
    and appears whole (written aside, then renamed over the old one)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pointer = directory / POINTER
    aside = directory / f".{POINTER}.{os.getpid()}"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"{os.fspath(socket)}\n")
        os.chmod(aside, 0o600)  # an older file left by a crash keeps no wider mode
        os.replace(aside, pointer)
    except BaseException:
        with contextlib.suppress(OSError):
            aside.unlink()
        raise
    return pointer


def read_pointer(directory: Path, default: Path) -> Path:
    """The socket ``directory``'s pointer file names, else ``default`` (no file, unreadable,
    or empty: a profile prepared before any supervisor ran, a test, ``doctor``)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        named = (directory / POINTER).read_text(encoding="utf-8").strip()
        if named:
            return Path(named)
    return default


def agent_pointer_dir(state_dir: Path, agent: str) -> Path:
    """Where an agent's pointer lives by default: ``<state_dir>/agents/<name>``."""
    return state_dir / "agents" / agent


def bridge_socket(state_dir: Path) -> Path:
    """The socket the permission hook dials, from the bridge's ``state_dir``."""
    return read_pointer(state_dir, state_dir / DEFAULT_SOCKET)


def agent_socket(agent_state_dir: Path) -> Path:
    """The socket an agent's MCP server dials, from its own state dir
    (``<state_dir>/agents/<name>``: the default socket is two levels up)."""
    return read_pointer(agent_state_dir, agent_state_dir.parent.parent / DEFAULT_SOCKET)
