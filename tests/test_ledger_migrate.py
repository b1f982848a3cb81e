"""``agentbridge ledger migrate --to postgresql://…`` as a user runs it (a real subprocess)
from a SQLite ledger written by the real store into a real PostgreSQL server: nothing lost,
ids kept, twice is the same as once, a SIGKILL midway is finished by running it again."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from agentbridge.ledger.asks import AskState
from agentbridge.ledger.migrate import KEYS
from agentbridge.ledger.permissions import PermissionState
from agentbridge.ledger.postgres.core import PostgresLedger
from agentbridge.ledger.sqlite import Ledger
from agentbridge.supervisor.lock import SupervisorLock
from agentbridge.testing.ledger_contract_base import ManualClock

DAY = 86400.0


async def _fill(path: Path, messages: int) -> None:
    """Every kind of row: finished and in-flight messages, replies in several states, audit
    notes, a quarantine, permission requests, nonces and tombstones of pruned keys."""
    clock = ManualClock(1_700_000_000.0)
    store = await Ledger.open(path, clock=clock)
    try:
        old = await store.ingest("tg", "c-old", "alice", "pruned soon", key="old-1", agent="a")
        got = await store.claim_next("a", "o", 60)
        assert got is not None and got.id == old.message.id
        await store.complete(got.id, got.fence, "done long ago")
        [reply] = await store.list_replies(message_id=got.id)
        await store.reserve_send(reply.id)
        await store.mark_sent(reply.id, "tg-old")
        clock.advance(40 * DAY)
        await store.ingest("tg", "c-new", "alice", "keeps the newest id", agent="b")
        assert (await store.prune(30 * DAY))[0] == 1  # leaves a tombstone of key old-1
        for i in range(messages):
            await store.ingest("tg", f"c{i % 7}", "bob", f"text {i} ünïcode", key=f"k{i}",
                               agent="a", meta={"n": i})  # fmt: skip
        while (m := await store.claim_next("a", "o", 60, exclusive=False)) is not None:
            if m.id % 3 == 0:
                await store.complete(m.id, m.fence, f"reply to {m.id}")
            elif m.id % 3 == 1:
                await store.note(m.id, "console", "receipt", "working")
                break  # stays in flight
        quarantined = await store.ingest("tg", "cq", "eve", "bad", key="q", agent="q")
        await store.quarantine(quarantined.message.id, "poison")
        for item in await store.list_replies(state="pending"):
            if item.id % 2:
                await store.reserve_send(item.id)
                await store.mark_sent(item.id, f"tg-{item.id}")
        ask = await store.open_permission(None, "a", "Bash", "ls", clock() + 600, can_always=True)
        await store.answer_permission(ask.short_id, PermissionState.ALLOWED, "bob", always=True)
        await store.open_permission(None, "a", "Edit", "x.py", clock() + 600)
        assert await store.claim_nonce("hmac", "n-1", 4e9)  # far ahead of any clock
        asked = await store.open_ask("a", "tg", "c1", "which?", ["x", "y"], clock() + 600)
        await store.answer_ask(asked.id, AskState.ANSWERED, "bob", "y")
        await store.open_ask("a", "tg", "c2", "still open?", [], clock() + 600)
    finally:
        await store.close()


def _dump_sqlite(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table, keys in KEYS.items():
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(keys)}")
            out[table] = [tuple(r) for r in rows]
        return out
    finally:
        conn.close()


def _dump_pg(url: str, like: Path) -> dict[str, list[tuple[Any, ...]]]:
    lite = sqlite3.connect(like)
    try:
        columns = {t: [r[1] for r in lite.execute(f"PRAGMA table_info({t})")] for t in KEYS}
    finally:
        lite.close()
    out = {}
    with psycopg.connect(url) as conn:
        for table, keys in KEYS.items():
            cols = columns[table]
            rows = conn.execute(
                f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(keys)}"
            ).fetchall()
            out[table] = [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows]
    return out


def _migrate(
    tmp_path: Path, source: Path, url: str, *extra: str, crash: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
    env["HOME"] = str(tmp_path / "home")
    if crash:
        env["AGENTBRIDGE_CRASH_AT"] = "migrate_batch"
    argv = [sys.executable, "-m", "agentbridge.cli", "ledger", "migrate", "--to", url]
    return subprocess.run(
        [*argv, "--from", str(source), *extra],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_migrate_copies_everything_and_twice_is_once(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "ledger.db"
    asyncio.run(_fill(source, 40))
    want = _dump_sqlite(source)
    assert all(want[t] for t in KEYS), {t: len(v) for t, v in want.items()}
    first = _migrate(tmp_path, source, postgres_url)
    assert first.returncode == 0, first.stderr
    assert _dump_pg(postgres_url, source) == want
    counts = {line.split()[0]: line.split() for line in first.stdout.splitlines()[:-1]}
    for table, rows in want.items():
        assert counts[table][1] == counts[table][4] == str(len(rows)), first.stdout
    second = _migrate(tmp_path, source, postgres_url)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert _dump_pg(postgres_url, source) == want
    assert "s3cret" not in first.stdout + first.stderr

    async def use_it() -> None:
        store = await PostgresLedger.open(postgres_url)
        try:
            dup = await store.ingest("tg", "c0", "bob", "text 0 ünïcode", key="k0", agent="a")
            assert not dup.created and dup.message.meta == {"n": 0}
            pruned = await store.ingest("tg", "c-old", "alice", "pruned soon", key="old-1")
            assert not pruned.created  # the tombstone came along
            new = await store.ingest("tg", "c9", "bob", "after the move", key="new")
            assert new.created and new.message.id > max(r[0] for r in want["messages"])
            events = await store.events_since(max(r[0] for r in want["events"]))
            assert [e.message_id for e in events] == [new.message.id]
            assert not await store.claim_nonce("hmac", "n-1", 4e9)  # already used
        finally:
            await store.close()

    asyncio.run(use_it())


def test_a_killed_migration_completes_when_run_again(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "ledger.db"
    asyncio.run(_fill(source, 120))
    want = _dump_sqlite(source)
    killed = _migrate(tmp_path, source, postgres_url, "--batch", "25", crash=True)
    assert killed.returncode == -9, killed.stderr  # SIGKILLed after its first batch
    partial = _dump_pg(postgres_url, source)
    assert len(partial["messages"]) == 25 and not partial["events"]
    again = _migrate(tmp_path, source, postgres_url, "--batch", "25")
    assert again.returncode == 0, again.stderr
    assert _dump_pg(postgres_url, source) == want


def test_migrate_refuses_while_a_supervisor_holds_the_ledger(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "ledger.db"
    asyncio.run(_fill(source, 3))
    lock = SupervisorLock(source)  # what a running `agentbridge up` holds
    lock.acquire()
    try:
        refused = _migrate(tmp_path, source, postgres_url)
    finally:
        lock.release()
    assert refused.returncode == 1
    assert "another agentbridge supervisor" in refused.stderr
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'messages'")
        assert tables.fetchone() == (0,)  # not even the schema was made


def test_migrate_refuses_a_database_holding_another_ledger(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "ledger.db"
    asyncio.run(_fill(source, 3))

    async def other_ledger() -> None:
        store = await PostgresLedger.open(postgres_url)
        try:
            await store.ingest("slack", "x", "zed", "someone else's")
        finally:
            await store.close()

    asyncio.run(other_ledger())
    refused = _migrate(tmp_path, source, postgres_url)
    assert refused.returncode == 1
    assert "already holds other rows" in refused.stderr


def test_a_table_a_later_schema_added_is_copied_or_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    """Tables beyond today's (another branch's migration): copied by the target's primary
    key when PostgreSQL has the table, refused by name when it does not."""
    source = tmp_path / "ledger.db"
    asyncio.run(_fill(source, 3))
    with sqlite3.connect(source) as lite:
        lite.execute("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        lite.executemany("INSERT INTO widgets (id, name) VALUES (?, ?)", [(3, "a"), (7, "b")])
    refused = _migrate(tmp_path, source, postgres_url)
    assert refused.returncode == 1 and "has no table widgets" in refused.stderr
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "CREATE TABLE widgets (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT)"
        )
    done = _migrate(tmp_path, source, postgres_url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT id, name FROM widgets ORDER BY id").fetchall() == [
            (3, "a"),
            (7, "b"),
        ]
        new = conn.execute("INSERT INTO widgets (name) VALUES ('c') RETURNING id").fetchone()
        assert new == (8,)
