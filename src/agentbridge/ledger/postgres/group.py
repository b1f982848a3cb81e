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

    def __init__(self, many: CommitMany, one: CommitOne, *, limit: int) -> None:
        self._many = many
        self._limit = limit  #: the most rows in one shared transaction
        self._one = one
        self._pending: list[_Pending] = []
        self._busy = False  #: a commit is in flight (a lone caller's or the flusher's)
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  #: shared transactions committed (benchmarks report the mean size)
        self.batched = 0  #: ingests they carried

    async def ingest(self, row: IngestRow) -> IngestResult:
        """Commit ``row`` alone or with the ingests queued beside it; return after COMMIT."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((row, future))
        if not self._busy:
            self._busy = True  # this caller leads the next commit
            try:
                await asyncio.sleep(0)  # producers ready in this loop iteration join it
            except BaseException:  # cancelled: the queued rows (this one too) still commit
                self._busy = False
                self._kick()
                raise
            batch = self._take()
            if len(batch) == 1:
                try:
                    return await self._one(row)
                finally:
                    self._busy = False
                    self._kick()
            self._flusher = loop.create_task(self._flush(batch), name="ledger-group-commit")
        outcome = await future
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def drain(self) -> None:
        """Wait until every queued ingest committed (closing the store)."""
        while self._busy or self._pending:
            if self._flusher is not None and not self._flusher.done():
                await asyncio.wait([self._flusher])
            else:
                await asyncio.sleep(0.001)

    def _take(self) -> list[_Pending]:
        batch, self._pending = self._pending[: self._limit], self._pending[self._limit :]
        return batch

    def _kick(self) -> None:
        """Start a flush of what queued behind a commit that just ended."""
        if self._pending and not self._busy:
            self._busy = True
            batch = self._take()
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self._flush(batch), name="ledger-group-commit")

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            while batch:
                outcomes = await self._commit(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
                batch = self._take()
                if batch:
                    await asyncio.sleep(0)  # this batch's callers run before the next commit
        except BaseException:  # cancelled (loop shutdown): no caller may wait forever
            for _, future in [*batch, *self._pending]:
                future.cancel()
            self._pending = []
            raise
        finally:
            self._busy = False

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
