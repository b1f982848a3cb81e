"""Whole databases on a PostgreSQL server: made and dropped for tests and benchmarks, and the
server-side tools the fault tests use (ending another session, as a lost connection would).

Synchronous on purpose: fixtures and scripts call these between event loops.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


def create_database(admin_url: str, name: str) -> None:
    """Create the empty database ``name`` (lower-case letters, digits, underscores)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked(name))))


def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` if it exists, ending the sessions still connected to it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(_checked(name))
            )
        )


def terminate_backend(admin_url: str, pid: int) -> bool:
    """End the server session ``pid`` (``pg_terminate_backend``): its client sees its
    connection lost. True if such a session existed."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    return bool(row and row[0])


def backends_of(admin_url: str, database: str) -> list[int]:
    """The server process ids of every client session connected to ``database``."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [int(r[0]) for r in rows]
