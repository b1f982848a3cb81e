"""Checks ``agentbridge up`` runs before it starts anything, each failing as one line.

Without them a typo'd agent ``cwd`` was silently created, a taken console or HTTP port left the
bridge running without that channel (one log line), a bad ``[channels.http]`` value and a
read-only ledger ended in a traceback. Each problem here names the key or path and the fix,
and nothing has been written yet: the ledger is untouched.
"""

from __future__ import annotations

import errno
import socket

from agentbridge.config import Config, ConfigError
from agentbridge.ledger.access import access_problem
from agentbridge.ledger.store import LedgerError

__all__ = ["PreflightError", "check_up", "cwd_problem"]


class PreflightError(Exception):
    """``up`` cannot start (e.g. another supervisor holds the ledger); one line for the user."""


def check_up(config: Config, *, console: bool = True) -> None:
    """Raise ``ConfigError``, ``LedgerError`` or ``PreflightError`` (one line) at the first
    problem found. The ledger and the lock come first: a second ``up`` says "already running",
    not "port in use"."""
    problem = access_problem(config.ledger.path)
    if problem is not None:
        raise LedgerError(problem)
    from agentbridge.supervisor.lock import SupervisorError, SupervisorLock

    lock = SupervisorLock(config.ledger.path)
    try:
        lock.acquire()  # the supervisor takes it again (and keeps it) right after this
    except SupervisorError as exc:
        raise PreflightError(str(exc)) from None
    lock.release()
    from agentbridge.supervisor.control_mcp import mcp_settings

    for name in config.agents:
        problem = cwd_problem(config, name)
        if problem is not None:
            raise ConfigError(problem)
        mcp_settings(config, name)  # a bad [mcp] value, before anything starts
    http = config.channels.get("http")
    if http is not None:
        from agentbridge.channels.http_auth import parse_settings

        settings = parse_settings(http)  # a bad value is a ConfigError naming its key
        check_port("channels.http", settings.host, settings.port)
    if console and config.console.enabled:
        check_port("console", config.console.host, config.console.port)


def cwd_problem(config: Config, name: str) -> str | None:
    """One line when agent ``name``'s ``cwd`` is missing or not a directory (``up`` and
    ``doctor`` say the same), else None."""
    cwd = config.agents[name].cwd
    if cwd is None or cwd.is_dir():
        return None
    where = f" in {config.path}" if config.path else ""
    if not cwd.exists():
        return (
            f"config: agents.{name}.cwd {str(cwd)!r} does not exist"
            f" (create it: mkdir -p {cwd}, or fix agents.{name}.cwd{where})"
        )
    return (
        f"config: agents.{name}.cwd {str(cwd)!r} is not a directory (fix agents.{name}.cwd{where})"
    )


def check_port(table: str, host: str, port: int) -> None:
    """Bind ``host:port`` the way the channel will (``SO_REUSEADDR``), then let it go; port 0
    (any free port) still checks that ``host`` is an address of this machine."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"config: {table}.port {port} on {host} is already in use (stop what listens"
                f" there, e.g. another `agentbridge up`, or set {table}.port to a free port;"
                " 0 = any)"
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigError(
                f"config: {table}.port {port} needs privileges to listen on"
                f" (use a port from 1024 to 65535, or 0 = any)"
            ) from None
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"config: cannot listen on {table}.host {host!r} port {port} ({reason});"
            f" use 127.0.0.1 or an address of this machine"
        ) from None
