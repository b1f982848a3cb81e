"""The PostgreSQL ledger: one ``LedgerStore`` over a connection pool, for several supervisors.

Each public method is one transaction on a pooled connection (psycopg 3, async) and returns
only after its COMMIT, so the return of ``ingest`` is the ingress ack as with SQLite. Claims
take rows ``FOR UPDATE SKIP LOCKED`` (two stores never wait on, or share, one message); fenced
moves lock their row. Listeners hear this store's changes at commit and other stores' through
LISTEN/NOTIFY (``changes.ChangeFeed``). The methods live in mixins by job, as in SQLite's.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from psycopg import AsyncConnection, Error, OperationalError
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from agentbridge.kinds import ChangeKind, ChangeListener
from agentbridge.ledger.base import LedgerError
from agentbridge.ledger.nodes import AgentFences
from agentbridge.ledger.outage import OutagePolicy
from agentbridge.ledger.postgres.asks import AskMixin
from agentbridge.ledger.postgres.changes import POLL_SECONDS, ChangeFeed
from agentbridge.ledger.postgres.group import GroupCommit
from agentbridge.ledger.postgres.ingest import MAX_BATCH, IngestMixin
from agentbridge.ledger.postgres.messages import MessagesMixin
from agentbridge.ledger.postgres.nodes import NodesMixin
from agentbridge.ledger.postgres.outbox import OutboxMixin
from agentbridge.ledger.postgres.permissions import PermissionMixin
from agentbridge.ledger.postgres.read import ReadMixin
from agentbridge.ledger.postgres.schema import migrate
from agentbridge.ledger.postgres.sql import CommitThenRaise, Cursor, problem
from agentbridge.ledger.postgres.tail import TailStats
from agentbridge.ledger.postgres.url import driver_url, where

log = logging.getLogger("agentbridge.ledger.postgres")
T = TypeVar("T")

#: pooled connections per store (a supervisor's workers, relay and channels share them)
POOL_SIZE = 10


class PostgresLedger(
    IngestMixin, MessagesMixin, OutboxMixin, ReadMixin, PermissionMixin, AskMixin, NodesMixin
):
    """Async ``LedgerStore`` over PostgreSQL. Open with ``await PostgresLedger.open(url)``."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[DictRow]],
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._pool = pool
        self._url = url
        self.where = where(url)  #: host:port/database, safe to print
        self.clock = clock
        self.max_attempts = max_attempts
        self._listeners: list[ChangeListener] = []
        self.fences = AgentFences()  #: agent leases this store's writes present (nodes.py)
        #: marks this store's notifications, so that its own feed skips them
        self.token = secrets.token_hex(8)
        self.feed = ChangeFeed(url, self.token, self._deliver, poll_seconds=poll_seconds)
        self.tail_stats = TailStats()  #: how often ``events_since`` waited for writers
        self._group = GroupCommit(self._commit_many, self._commit_one, limit=MAX_BATCH)
        self.outage = OutagePolicy()  #: fail (a CLI) or wait (a supervisor) when the server is away

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        pool_size: int = POOL_SIZE,
        poll_seconds: float = POLL_SECONDS,
        connect_timeout: float = 10.0,
    ) -> PostgresLedger:
        """Connect, migrate the schema if needed, and open the pool; ``LedgerError`` (one
        line, no password) when the server cannot be reached or refuses."""
        url = driver_url(url)
        try:
            conn = await AsyncConnection.connect(
                url, autocommit=True, row_factory=dict_row, connect_timeout=int(connect_timeout)
            )
        except Error as exc:
            raise LedgerError(problem(url, exc)) from None
        try:
            await migrate(conn)
        except Error as exc:
            raise LedgerError(problem(url, exc)) from None
        finally:
            await conn.close()
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            url,
            connection_class=AsyncConnection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=pool_size,
            open=False,
            check=AsyncConnectionPool.check_connection,  # a killed session is replaced
            name="agentbridge-ledger",
            reconnect_timeout=7 * 86400.0,  # an outage pauses the work; it never ends the pool
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            await pool.close()
            raise LedgerError(f"ledger {where(url)}: cannot open a connection pool") from None
        return cls(pool, url, clock=clock, max_attempts=max_attempts, poll_seconds=poll_seconds)

    async def close(self) -> None:
        """Close the feed and the pool; every method that returned has committed (and the
        ingests still queued for a shared transaction commit first)."""
        await self._group.drain()
        await self.feed.close()
        await self._pool.close()

    async def __aenter__(self) -> PostgresLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ changes

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(kind, id)`` after every committed change, this store's or another
        store's of the same database; returns an unsubscribe."""
        self._listeners.append(listener)
        self.feed.start()

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _deliver(self, change: ChangeKind, ids: Iterable[int]) -> None:
        for ident in ids:
            for listener in list(self._listeners):
                try:
                    listener(change, ident)
                except Exception:  # a listener's bug must not undo a committed write
                    log.exception("ledger listener failed")

    def _notify(self, kind: str, ids: Iterable[int]) -> None:
        self._deliver(ChangeKind(kind), ids)

    # ------------------------------------------------------------------ transactions

    async def _tx(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T:
        """Run ``fn(cursor, now)`` in one transaction; commit a refusal's record, then raise.
        No server (no connection, or it broke before the COMMIT): ``outage`` decides."""
        while True:
            now = self.clock()
            signal: CommitThenRaise | None = None
            sent = False  #: the COMMIT may have gone out: never run twice
            try:
                async with (
                    self._pool.connection(timeout=self.outage.timeout) as conn,
                    conn.transaction(),
                    conn.cursor() as cur,
                ):
                    try:
                        result = await fn(cur, now)
                    except CommitThenRaise as raised:
                        signal = raised
                    sent = True
            except OperationalError as exc:
                if not sent and await self._no_server(exc):  # rolled back: nothing committed
                    continue
                raise LedgerError(problem(self._url, exc)) from exc
            self.outage.up(self.where)
            if signal is not None:
                raise signal.error from None
            return result

    async def _auto(self, fn: Callable[[Cursor, float], Awaitable[T]]) -> T:
        """Run ``fn(cursor, now)`` in autocommit mode: each statement commits by itself (one
        round trip for a statement that does all of a write); only a call that got no
        connection waits out an outage (a sent statement may have committed)."""
        while True:
            try:
                async with (
                    self._pool.connection(timeout=self.outage.timeout) as conn,
                    conn.cursor() as cur,
                ):
                    result = await fn(cur, self.clock())
            except PoolTimeout as exc:
                if await self._no_server(exc):
                    continue
                raise LedgerError(problem(self._url, exc)) from exc
            except OperationalError as exc:
                raise LedgerError(problem(self._url, exc)) from exc
            self.outage.up(self.where)
            return result

    async def _read(self, fn: Callable[[Cursor], Awaitable[T]], *, snapshot: bool = False) -> T:
        """Run a read-only ``fn(cursor)``: one statement as it comes, or with ``snapshot``
        several in one repeatable-read snapshot (``stats`` adds up consistent counts). A read
        is safe to run again, so any lost connection waits out an outage (``outage``)."""
        while True:
            try:
                async with self._pool.connection(timeout=self.outage.timeout) as conn:
                    if not snapshot:
                        async with conn.cursor() as cur:
                            result = await fn(cur)
                    else:
                        async with conn.transaction(), conn.cursor() as cur:
                            await cur.execute(
                                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                            )
                            result = await fn(cur)
            except OperationalError as exc:
                if await self._no_server(exc):
                    continue
                raise LedgerError(problem(self._url, exc)) from exc
            self.outage.up(self.where)
            return result

    async def _no_server(self, exc: OperationalError) -> bool:
        """No connection could be had, or it broke: True when the call should run again."""
        lost = isinstance(exc, PoolTimeout) or _connection_lost(exc)
        return lost and await self.outage.retry(self.where, problem(self._url, exc))


def _connection_lost(exc: OperationalError) -> bool:
    """The error is the connection's (server gone), not the statement's: no SQLSTATE, or
    class 08 (connection exception) / 57P0x (the server shutting down)."""
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P0"))
