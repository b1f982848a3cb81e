"""``agentbridge ledger migrate --to postgresql://…``: copy a SQLite ledger into PostgreSQL.

Why: a user who outgrows one machine keeps every message, reply, audit row, tombstone and
permission request, with the same ids (a chat's ``reply to message 42`` and the console's
links still point at the same rows). The copy is an upsert by primary key in batches, each
batch its own transaction: run it twice and the target holds the same rows; kill it midway
and run it again and it completes (the batches already committed are simply written again).
Afterwards the id sequences are moved past the copied ids, so new rows never reuse one.

It refuses, rather than merges, a target that holds rows of another ledger (an id the source
does not have, or a message whose text or time differ), and a source column the PostgreSQL
schema has no place for: "without loss" is checked, not hoped. The source is read in one
snapshot and never written; the caller holds the supervisor lock so nobody writes it either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection, sql

from agentbridge.crashpoints import crash_point
from agentbridge.ledger.base import LedgerError
from agentbridge.ledger.migrations import SCHEMA_VERSION as SQLITE_SCHEMA
from agentbridge.ledger.postgres.core import PostgresLedger
from agentbridge.ledger.postgres.url import driver_url, where

#: the ledger's tables and their primary keys, copied in this order (parents first)
KEYS: dict[str, tuple[str, ...]] = {
    "messages": ("id",),
    "outbox": ("id",),
    "events": ("id",),
    "permission_requests": ("id",),
    "idempotency_tombstones": ("channel", "idem_key"),
    "seen_nonces": ("scope", "nonce"),
    "asks": ("id",),
}
#: runtime ownership, not history: the first supervisor on PostgreSQL registers its node and
#: takes its leases afresh (a copied lease would name a node that is not running there)
SKIP = frozenset({"nodes", "leases"})
BATCH = 1000  #: rows per committed transaction


@dataclass(frozen=True)
class Copied:
    """One table's count: rows in the SQLite source, rows now in PostgreSQL."""

    table: str
    source: int
    target: int


async def migrate_to_postgres(
    source: Path,
    url: str,
    *,
    batch: int = BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> list[Copied]:
    """Copy every row of the SQLite ledger ``source`` into the PostgreSQL ledger ``url``."""
    if not source.exists():
        raise LedgerError(f"ledger migrate: no SQLite ledger at {source}")
    store = await PostgresLedger.open(url)  # creates or upgrades the target's schema
    await store.close()
    lite = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        lite.execute("BEGIN")  # one snapshot of the source for the whole copy
        version = int(lite.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 or version > SQLITE_SCHEMA:
            raise LedgerError(f"ledger migrate: {source} is not a ledger this agentbridge reads")
        async with await AsyncConnection.connect(driver_url(url), autocommit=True) as pg:
            plan = await _plan(lite, pg, source, url)
            for table in plan:
                await _check_target(lite, pg, table, url)
            out = []
            for table in plan:
                copied = await _copy(lite, pg, table, batch, progress)
                await _advance_sequence(pg, table)
                out.append(Copied(table.name, copied, await _count(pg, table.name)))
            return out
    finally:
        lite.close()


@dataclass(frozen=True)
class _Table:
    name: str
    columns: dict[str, str]  #: source column → its PostgreSQL type
    keys: tuple[str, ...]  #: the target's primary key
    always: bool  #: an identity ``GENERATED ALWAYS`` id (inserting one needs OVERRIDING)


async def _plan(
    lite: sqlite3.Connection, pg: AsyncConnection[Any], source: Path, url: str
) -> list[_Table]:
    """Each source table with its columns, their PostgreSQL types and the target's key;
    refuse what has no place in the target. The ledger's own tables go first (parents
    before children); a table a later schema added is copied too, if the target has it."""
    names = [
        str(r[0])
        for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
        if str(r[0]) not in SKIP
    ]
    order = [t for t in KEYS if t in names] + [t for t in names if t not in KEYS]
    plan = []
    for table in order:
        cur = await pg.execute(
            "SELECT column_name, data_type, identity_generation FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        found = await cur.fetchall()
        types = {str(r[0]): str(r[1]) for r in found}
        columns = [str(r[1]) for r in lite.execute(f"PRAGMA table_info({table})")]
        missing = [c for c in columns if c not in types]
        if not types or missing:
            what = f"column {table}.{missing[0]}" if types else f"table {table}"
            raise LedgerError(
                f"ledger migrate: {where(url)} has no {what}; upgrade agentbridge there first"
            )
        keys = KEYS.get(table) or await _primary_key(pg, table)
        always = any(r[2] == "ALWAYS" for r in found)
        plan.append(_Table(table, {c: types[c] for c in columns}, keys, always))
    return plan


async def _primary_key(pg: AsyncConnection[Any], table: str) -> tuple[str, ...]:
    cur = await pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary"
        " ORDER BY array_position(i.indkey, a.attnum)",
        (table,),
    )
    keys = tuple(str(r[0]) for r in await cur.fetchall())
    if not keys:
        raise LedgerError(f"ledger migrate: table {table} has no primary key to copy it by")
    return keys


async def _check_target(
    lite: sqlite3.Connection, pg: AsyncConnection[Any], plan: _Table, url: str
) -> None:
    """The target holds nothing but (an earlier, maybe partial, copy of) this source."""
    table = plan.name
    if plan.keys != ("id",):
        return  # tombstones and nonces: the same key means the same fact
    extra = "created_at, text_hash" if table == "messages" else "NULL, NULL"
    cur = await pg.execute(
        sql.SQL("SELECT id, {} FROM {}").format(sql.SQL(extra), sql.Identifier(table))
    )
    theirs = await cur.fetchall()
    if not theirs:
        return
    ours = {
        int(r[0]): (r[1], r[2]) for r in lite.execute(f"SELECT id, {extra} FROM {table}")
    }  # fmt: skip
    for ident, *rest in theirs:
        if ours.get(int(ident)) != tuple(rest):
            raise LedgerError(
                f"ledger migrate: {where(url)} already holds other rows ({table} {ident} is not"
                " this ledger's); migrate into an empty database"
            )


async def _copy(
    lite: sqlite3.Connection,
    pg: AsyncConnection[Any],
    plan: _Table,
    batch: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    """Upsert every row of the table, ``batch`` rows per transaction; returns the count."""
    table, columns, keys = plan.name, plan.columns, plan.keys
    names = list(columns)
    booleans = [i for i, c in enumerate(names) if columns[c] == "boolean"]
    overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if plan.always else None
    updates = [c for c in names if c not in keys] or [keys[0]]
    statement = sql.SQL(
        "INSERT INTO {table} ({cols}){overriding} VALUES ({values})"
        " ON CONFLICT ({keys}) DO UPDATE SET {sets}"
    ).format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        overriding=overriding or sql.SQL(""),
        values=sql.SQL(", ").join(sql.Placeholder() * len(names)),
        keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates
        ),
    )
    rows = lite.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY {', '.join(keys)}")
    done = 0
    while chunk := rows.fetchmany(batch):
        values = [_converted(row, booleans) for row in chunk]
        async with pg.transaction(), pg.cursor() as cur:
            await cur.executemany(statement, values)
        done += len(values)
        if progress is not None:
            progress(table, done)
        crash_point("migrate_batch")
    return done


def _converted(row: Sequence[Any], booleans: list[int]) -> list[Any]:
    """SQLite's 0/1 as PostgreSQL booleans; everything else maps as it is."""
    out = list(row)
    for i in booleans:
        if out[i] is not None:
            out[i] = bool(out[i])
    return out


async def _advance_sequence(pg: AsyncConnection[Any], plan: _Table) -> None:
    """Move the table's id sequence past the copied ids (new rows never reuse one)."""
    table = plan.name
    if plan.keys != ("id",):
        return
    cur = await pg.execute("SELECT pg_get_serial_sequence(%s, 'id') AS seq", (table,))
    found = await cur.fetchone()
    if found is None or found[0] is None:
        return
    async with pg.transaction():
        await pg.execute(
            sql.SQL(
                "SELECT setval(%s, m) FROM (SELECT MAX(id) AS m FROM {}) AS top WHERE m IS NOT NULL"
            ).format(sql.Identifier(table)),
            (found[0],),
        )


async def _count(pg: AsyncConnection[Any], table: str) -> int:
    cur = await pg.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
    row = await cur.fetchone()
    return int(row[0]) if row else 0
