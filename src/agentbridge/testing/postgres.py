"""A real PostgreSQL server for tests and benchmarks: ``initdb`` into a private directory,
a private port on 127.0.0.1 and a private socket directory, stopped and removed at the end.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` account
(or ``nobody``). The binaries are found in ``AGENTBRIDGE_PG_BINDIR``, Debian's
``/usr/lib/postgresql/<version>/bin`` or ``PATH`` (Homebrew, other systems).

Fixtures (registered as a pytest plugin by installing agentbridge): ``postgres_server`` (one
per session) and ``postgres_url`` (a new, empty database per test, dropped after it). They
skip with the reason when no server can be started; with ``AGENTBRIDGE_REQUIRE_POSTGRES=1``
(CI) that is a failure instead. ``AGENTBRIDGE_TEST_POSTGRES_URL`` names an existing server's
admin URL to use instead of starting one. Scripts use ``running_postgres()``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REQUIRE_ENV = "AGENTBRIDGE_REQUIRE_POSTGRES"
EXTERNAL_ENV = "AGENTBRIDGE_TEST_POSTGRES_URL"
_names = itertools.count(1)


class PostgresUnavailable(Exception):
    """No server could be started here; ``str()`` says why."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first)."""
    env = os.environ.get("AGENTBRIDGE_PG_BINDIR")
    if env:
        return Path(env)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: ``admin_url`` is its superuser's ``postgres`` database."""

    admin_url: str
    root: Path | None = None  #: the private directory (None: an external server)
    bindir: Path | None = None
    user: str | None = None

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + database))

    def new_database(self, prefix: str = "ab_test") -> str:
        """A new, empty database; returns its URL."""
        from agentbridge.ledger.postgres.admin import create_database

        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        create_database(self.admin_url, name)
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop the database ``url`` names (its sessions are ended)."""
        from agentbridge.ledger.postgres.admin import drop_database

        drop_database(self.admin_url, urlsplit(url).path.lstrip("/"))

    def _run(self, *argv: str, timeout: float = 60) -> None:
        assert self.bindir is not None
        done = subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PostgresUnavailable(f"{argv[0]} failed: {' / '.join(tail)}")

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb and start a private server; ``PostgresUnavailable`` with the reason."""
        external = os.environ.get(EXTERNAL_ENV)
        if external:
            return cls(admin_url=external)
        bindir = find_bindir()
        if bindir is None or not (bindir / "pg_ctl").exists():
            raise PostgresUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl): install the postgresql package"
            )
        user = None
        if os.geteuid() == 0:  # the server refuses to run as root
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    user = pwd.getpwnam(name).pw_name
                    break
            if user is None:
                raise PostgresUnavailable("running as root and no postgres or nobody account")
        root = Path(tempfile.mkdtemp(prefix="agentbridge-pg-"))
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(root, account.pw_uid, account.pw_gid)
        server = cls(admin_url="", root=root, bindir=bindir, user=user)
        try:
            server._run(
                "initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            for _ in range(3):  # a port taken between the probe and the start: try another
                port = _free_port()
                options = (
                    f"-c port={port} -c listen_addresses=127.0.0.1"
                    f" -c unix_socket_directories={root} -c max_connections=200"
                )
                try:
                    server._run(
                        "pg_ctl", "-D", str(root / "data"), "-l", str(root / "server.log"),
                        "-o", options, "-w", "-t", "60", "start",
                    )  # fmt: skip
                except PostgresUnavailable:
                    continue
                server.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                return server
            raise PostgresUnavailable(f"the server did not start; see {root}/server.log")
        except BaseException:
            server.stop()
            raise

    def stop(self) -> None:
        """Stop the server and remove its directory (nothing for an external server)."""
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A private server for the duration of the block (for scripts)."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def _unavailable(reason: str) -> None:
    message = f"no PostgreSQL server: {reason}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1: PostgreSQL tests must run here)")
    pytest.skip(message)


@contextlib.contextmanager
def private_server() -> Iterator[PostgresServer]:
    """A server of the caller's own (a test module that stops or kills it), skipped, or
    failed where PostgreSQL is required, exactly like ``postgres_server``."""
    if importlib.util.find_spec("psycopg") is None:
        _unavailable("psycopg is not installed (pip install 'agentbridge[postgres]')")
    try:
        server = PostgresServer.start()
    except (PostgresUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(str(exc))
        raise  # unreachable: skip and fail raise
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_database(server: PostgresServer, prefix: str = "ab_test") -> Iterator[str]:
    """A new, empty database on ``server``, dropped on exit."""
    url = server.new_database(prefix)
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the test session."""
    with private_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database on the session's server, dropped after the test."""
    with fresh_database(postgres_server) as url:
        yield url


__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "find_bindir",
    "fresh_database",
    "postgres_server",
    "postgres_url",
    "private_server",
    "running_postgres",
]
