"""Forward-only schema migrations, tracked in ``PRAGMA user_version``.

Append new steps; never edit a released one. A ledger written by a newer agentbridge
(user_version above ``SCHEMA_VERSION``) is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: messages, events, outbox
    """
    CREATE TABLE messages (
        id               INTEGER PRIMARY KEY,
        channel          TEXT    NOT NULL,
        conversation     TEXT    NOT NULL,
        sender           TEXT    NOT NULL,
        platform_id      TEXT,
        text             TEXT    NOT NULL,
        text_hash        TEXT    NOT NULL,
        agent            TEXT    NOT NULL,
        priority         INTEGER NOT NULL DEFAULT 0,
        state            TEXT    NOT NULL,
        attempt          INTEGER NOT NULL DEFAULT 1,
        fence            INTEGER NOT NULL DEFAULT 0,
        lease_owner      TEXT,
        lease_expires_at REAL,
        heartbeat_at     REAL,
        reply            TEXT,
        reason           TEXT,
        meta             TEXT,
        created_at       REAL    NOT NULL,
        updated_at       REAL    NOT NULL,
        UNIQUE (channel, platform_id)
    );
    CREATE INDEX messages_queued ON messages (agent, priority DESC, id)
        WHERE state = 'queued';
    CREATE INDEX messages_in_flight ON messages (agent, channel, conversation)
        WHERE state IN ('claimed', 'submitted', 'accepted');
    CREATE INDEX messages_state ON messages (state, updated_at);

    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        message_id  INTEGER,
        outbox_id   INTEGER,
        at          REAL    NOT NULL,
        actor       TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        from_state  TEXT,
        to_state    TEXT,
        attempt     INTEGER,
        detail      TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX events_message ON events (message_id, id);
    CREATE INDEX events_outbox ON events (outbox_id, id) WHERE outbox_id IS NOT NULL;

    CREATE TABLE outbox (
        id                  INTEGER PRIMARY KEY,
        message_id          INTEGER,
        channel             TEXT    NOT NULL,
        conversation        TEXT    NOT NULL,
        text                TEXT    NOT NULL,
        text_hash           TEXT    NOT NULL,
        idem_key            TEXT    NOT NULL UNIQUE,
        reply_to            TEXT,
        state               TEXT    NOT NULL,
        attempts            INTEGER NOT NULL DEFAULT 0,
        scheduled_at        REAL    NOT NULL,
        expires_at          REAL    NOT NULL,
        platform_message_id TEXT,
        last_error          TEXT,
        created_at          REAL    NOT NULL,
        updated_at          REAL    NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (scheduled_at) WHERE state = 'pending';
    CREATE INDEX outbox_state ON outbox (state, updated_at);
    """,
    # 2: how many parts of a long reply the platform already has (a retry resumes after them)
    """
    ALTER TABLE outbox ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: replay defence that survives a restart and retention: HMAC signatures already used
    # (kept until their timestamp window closed) and tombstones of pruned idempotency keys
    """
    CREATE TABLE seen_nonces (
        scope      TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (scope, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX seen_nonces_expiry ON seen_nonces (expires_at);

    CREATE TABLE idempotency_tombstones (
        channel     TEXT    NOT NULL,
        idem_key    TEXT    NOT NULL,
        text_hash   TEXT    NOT NULL,
        message_id  INTEGER NOT NULL,
        final_state TEXT    NOT NULL,
        pruned_at   REAL    NOT NULL,
        PRIMARY KEY (channel, idem_key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_tombstones_age ON idempotency_tombstones (pruned_at);
    """,
    # 4: an agent's permission prompts relayed to the chat, and who answered them
    """
    CREATE TABLE permission_requests (
        id          INTEGER PRIMARY KEY,
        short_id    TEXT    NOT NULL,
        message_id  INTEGER,
        agent       TEXT    NOT NULL,
        tool        TEXT    NOT NULL,
        summary     TEXT    NOT NULL,
        can_always  INTEGER NOT NULL DEFAULT 0,
        state       TEXT    NOT NULL,
        always      INTEGER NOT NULL DEFAULT 0,
        answered_by TEXT,
        created_at  REAL    NOT NULL,
        expires_at  REAL    NOT NULL,
        answered_at REAL
    );
    CREATE UNIQUE INDEX permission_requests_pending ON permission_requests (short_id)
        WHERE state = 'pending';
    CREATE INDEX permission_requests_short ON permission_requests (short_id, id);
    CREATE INDEX permission_requests_message ON permission_requests (message_id, id);
    """,
    # 5: a fleet's nodes (supervisors) and named leases with fencing tokens (ledger/nodes.py)
    """
    CREATE TABLE nodes (
        name         TEXT PRIMARY KEY,
        instance     TEXT    NOT NULL,
        host         TEXT    NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   REAL    NOT NULL,
        heartbeat_at REAL    NOT NULL,
        stopped_at   REAL
    );
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        node        TEXT    NOT NULL,
        token       INTEGER NOT NULL,
        expires_at  REAL    NOT NULL,
        acquired_at REAL    NOT NULL
    );
    """,
    # 6: questions the agent asked the user (MCP `ask`) and the answers the chat gave
    """
    CREATE TABLE asks (
        id           INTEGER PRIMARY KEY,
        short_id     TEXT    NOT NULL,
        agent        TEXT    NOT NULL,
        message_id   INTEGER,
        attempt      INTEGER,
        channel      TEXT    NOT NULL,
        conversation TEXT    NOT NULL,
        question     TEXT    NOT NULL,
        choices      TEXT    NOT NULL DEFAULT '[]',
        state        TEXT    NOT NULL,
        answer       TEXT,
        answered_by  TEXT,
        answer_key   TEXT,
        created_at   REAL    NOT NULL,
        expires_at   REAL    NOT NULL,
        answered_at  REAL
    );
    CREATE UNIQUE INDEX asks_pending ON asks (short_id) WHERE state = 'pending';
    CREATE INDEX asks_conversation ON asks (channel, conversation, id);
    CREATE INDEX asks_message ON asks (message_id, id);
    """,
    # 7: the node whose relay reserved a send, so a start recovers only its own (and dead
    # nodes') ``sending`` rows, never one a live node is sending right now
    """
    ALTER TABLE outbox ADD COLUMN node TEXT;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The ledger was written by a newer agentbridge."""


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; return the version found before.

    Two processes may open a fresh file at the same moment, so the version is read again
    under the write lock before each step: the loser of the race sees the winner's schema
    instead of failing on "table already exists".
    """
    found = _check(conn, path)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _check(conn, path)
            if version >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                return found
            for statement in _split(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _check(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; refuse one written by a newer agentbridge."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"ledger {path} has schema version {version}, newer than this agentbridge "
            f"understands ({SCHEMA_VERSION}); upgrade agentbridge or point ledger.path elsewhere"
        )
    return version


def _split(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit on its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
