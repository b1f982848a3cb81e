"""Group commit for the PostgreSQL ledger: concurrent ingests of one store share a transaction.

Why: every ingest announces its row with ``pg_notify``, and PostgreSQL serializes the commits
of notifying transactions on one database-wide lock held across the WAL flush, so eight
producers each committing their own notifying transaction got no more than one did (their
flushes could not be shared). Here, while one commit is in flight, arriving ingests queue;
the next transaction carries all of them (their inserts pipelined in one round trip) and one
notification. Durability is unchanged: each caller's ack still follows the COMMIT holding
its row. A lone ingest, with nobody to share with, keeps its one-statement path.

If a shared transaction fails, each of its ingests is retried alone, so one caller's failure
never becomes another's; a lost connection (``LedgerError``) is everyone's answer at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from agentbridge.ledger.base import IdempotencyConflict, IngestResult, LedgerError
from agentbridge.ledger.rows import IngestRow

#: what a commit hands each caller: its result, or the exception to raise
Outcome = IngestResult | BaseException
_Pending = tuple[IngestRow, "asyncio.Future[Outcome]"]
#: commit several rows in one transaction: one outcome per row, in order
CommitMany = Callable[[Sequence[IngestRow]], Awaitable[list[Outcome]]]
#: commit one row alone: its result, or raise
CommitOne = Callable[[IngestRow], Awaitable[IngestResult]]


class GroupCommit:
    """The queue of one store's ingests waiting for a transaction."""

    def __init__(self, many: CommitMany, one: CommitOne, *, limit: int, flushers: int = 1) -> None:
        self._many = many
        self._one = one
        self._limit = limit  #: the most rows in one shared transaction
        self._slots = flushers  #: shared transactions in flight at once
        self._pending: list[_Pending] = []
        self._inflight = 0  #: commits in flight (a lone caller's or a flush task's)
        self._leading = False  #: a caller is gathering the next batch (yielding once)
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  #: shared transactions committed (benchmarks report the mean size)
        self.batched = 0  #: ingests they carried

    async def ingest(self, row: IngestRow) -> IngestResult:
        """Commit ``row`` alone or with the ingests queued beside it; return after COMMIT."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if not self._leading and self._inflight < self._slots:
            self._leading = True  # this caller gathers the next commit
            try:
                await asyncio.sleep(0)  # producers ready in this loop iteration join it
            except BaseException:  # cancelled: the queued rows (this one too) still commit
                self._leading = False
                self._kick()
                raise
            self._leading = False
            if self._inflight == 0 and len(self._pending) == 1 and self._pending[0][1] is future:
                self._pending = []  # alone: one statement in this caller's task
                self._inflight += 1
                try:
                    return await self._one(row)
                finally:
                    self._inflight -= 1
                    self._kick()
            self._kick()
        outcome = await future
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def drain(self) -> None:
        """Wait until every queued ingest committed (closing the store)."""
        while self._inflight or self._pending or self._leading:
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            else:
                self._kick()
                await asyncio.sleep(0.001)

    def _kick(self) -> None:
        """Start shared commits of what is queued, one per free slot (split evenly, so that
        several are in flight at once and their execution overlaps)."""
        while self._pending and self._inflight < self._slots:
            free = self._slots - self._inflight
            share = min(self._limit, -(-len(self._pending) // free))
            batch, self._pending = self._pending[:share], self._pending[share:]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(
                self._flush(batch), name="ledger-group-commit"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._commit(batch)
        except BaseException:  # cancelled (loop shutdown): no caller may wait forever
            for _, future in [*batch, *self._pending]:
                future.cancel()
            self._pending = []
            self._inflight -= 1
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
        self._inflight -= 1
        self._kick()

    async def _commit(self, batch: list[_Pending]) -> list[Outcome]:
        rows = [row for row, _ in batch]
        if len(rows) == 1:
            return [await self._alone(rows[0])]
        try:
            outcomes = await self._many(rows)
        except LedgerError as exc:  # the server or the connection: the same for everyone
            return [exc] * len(rows)
        except Exception:
            return [await self._alone(row) for row in rows]
        self.batches += 1
        self.batched += len(rows)
        return outcomes

    async def _alone(self, row: IngestRow) -> Outcome:
        try:
            return await self._one(row)
        except (IdempotencyConflict, Exception) as exc:
            return exc
