"""The durable ledger: every inbound message, its lease, the outbox and the audit trail.

Each public method is one SQLite transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) run as a single
function on aiosqlite's connection thread, so a transition and its event row commit together
and cost one thread hop. A method returns only after its commit: the return of ``ingest`` is
the ingress ack a channel may pass on to its platform.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from agentbridge.ledger_outbox import OutboxMixin
from agentbridge.migrations import migrate
from agentbridge.models import Event, Message
from agentbridge.states import IN_FLIGHT, MESSAGE_TRANSITIONS, MessageState

log = logging.getLogger(__name__)
T = TypeVar("T")

_IN_FLIGHT_SQL = "('claimed', 'submitted', 'accepted')"


class LedgerError(Exception):
    """Base of the ledger's own errors."""


class IdempotencyConflict(LedgerError):
    """The same idempotency key arrived again with different content."""


class StaleLease(LedgerError):
    """A transition presented a fencing version that is no longer current (recorded)."""


class IllegalTransition(LedgerError):
    """The state machine does not allow this move (recorded)."""


class NotFound(LedgerError):
    """No row with that id."""


class _CommitThenRaise(Exception):
    """Raised inside a transaction to keep what it wrote (a refusal's audit row), then raise.

    Refusals must survive in the audit trail, but the caller must still see the error:
    ``_tx`` commits and re-raises ``error`` instead of rolling back.
    """

    def __init__(self, error: LedgerError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` returns: the stored message, and whether this call created it."""

    message: Message
    created: bool


@dataclass(frozen=True)
class NewMessage:
    """One message for ``ingest_many``."""

    channel: str
    conversation: str
    sender: str
    text: str
    key: str | None = None
    agent: str = "default"
    priority: int = 0
    meta: dict[str, Any] | None = None


#: one queued single-message ingest: the message, its meta already encoded, the caller's future
_PendingIngest = tuple[
    NewMessage, "str | None", "asyncio.Future[IngestResult | IdempotencyConflict]"
]


def text_hash(text: str) -> str:
    """Canonical content hash used by idempotency checks."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def insert_event(
    conn: sqlite3.Connection,
    now: float,
    actor: str,
    kind: str,
    *,
    message_id: int | None = None,
    outbox_id: int | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    attempt: int | None = None,
    detail: str = "",
) -> None:
    """Append one audit-trail row (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO events (message_id, outbox_id, at, actor, kind, from_state, to_state,"
        " attempt, detail) VALUES (?,?,?,?,?,?,?,?,?)",
        (message_id, outbox_id, now, actor, kind, from_state, to_state, attempt, detail),
    )


class Ledger(OutboxMixin):
    """Async facade over one SQLite file. Open with ``await Ledger.open(path)``."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
    ) -> None:
        self._db = db
        self.path = path
        self.clock = clock
        self.max_attempts = max_attempts
        self._listeners: list[Callable[[str, int], None]] = []
        self._pending_ingests: list[_PendingIngest] = []
        self._ingest_flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        synchronous: str = "full",
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
    ) -> Ledger:
        """Open (creating and migrating if needed) the ledger at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            await _on_db_thread(db, lambda: _configure(db._conn, synchronous, str(path)))
        except BaseException:
            await db.close()
            raise
        # the -wal file holds the newest messages' text too: same privacy as the database
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                if file.exists():
                    file.chmod(0o600)
            except OSError:  # pragma: no cover - e.g. a read-only mount
                log.warning("could not set mode 0600 on %s", file)
        return cls(db, path, clock=clock, max_attempts=max_attempts)

    async def close(self) -> None:
        """Close the connection once queued ingests have committed (their callers get acks)."""
        while self._ingest_flusher is not None and not self._ingest_flusher.done():
            await asyncio.wait([self._ingest_flusher])
        await self._db.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_change(self, listener: Callable[[str, int], None]) -> Callable[[], None]:
        """Call ``listener(kind, id)`` after every committed change; returns an unsubscribe.

        ``kind`` is ``"message"`` or ``"outbox"``. This is how the dispatcher and relay wake at
        once on an ingest instead of polling.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:  # idempotent: shutdown paths may call it twice
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, kind: str, ids: Iterable[int]) -> None:
        for ident in ids:
            for listener in list(self._listeners):
                try:
                    listener(kind, ident)
                except Exception:  # a listener's bug must not undo a committed write
                    log.exception("ledger listener failed")

    async def _tx(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run ``fn(conn, now)`` in one write transaction on the connection thread."""
        now = self.clock()
        return await _on_db_thread(self._db, lambda: _run_tx(self._db._conn, fn, now))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` on the connection thread, in one snapshot.

        A deferred transaction makes multi-statement reads (``stats``) consistent with each
        other even while another process writes.
        """

        def run() -> T:
            conn = self._db._conn
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return await _on_db_thread(self._db, run)

    # ------------------------------------------------------------------ ingest

    async def ingest(
        self,
        channel: str,
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        agent: str = "default",
        priority: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Durably store one inbound message; idempotent on ``(channel, key)``.

        Raises ``IdempotencyConflict`` (and records it) when the key exists with other text.
        """
        item = NewMessage(channel, conversation, sender, text, key, agent, priority, meta)
        # Encode here, in the caller's task: a bad ``meta`` must fail this caller only, not
        # the group commit it would otherwise share with other producers.
        meta_json = _encode_meta(meta)
        future: asyncio.Future[IngestResult | IdempotencyConflict] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending_ingests.append((item, meta_json, future))
        if self._ingest_flusher is None or self._ingest_flusher.done():
            self._ingest_flusher = asyncio.create_task(self._flush_ingests())
        result = await future
        if isinstance(result, IdempotencyConflict):
            raise result
        return result

    async def _flush_ingests(self) -> None:
        """Group commit: ingests that arrive while a commit is in flight share the next one.

        Each caller still returns only after the transaction holding its row committed. If a
        shared transaction fails, each of its ingests is retried in a transaction of its own,
        so one caller's failure never becomes another's.
        """
        batch: list[_PendingIngest] = []
        try:
            while self._pending_ingests:
                batch, self._pending_ingests = self._pending_ingests, []
                pairs = [(item, meta_json) for item, meta_json, _ in batch]
                try:
                    results: list[IngestResult | IdempotencyConflict | Exception] = [
                        *await self._ingest_tx(pairs)
                    ]
                except Exception as exc:
                    # the file itself failed (locked past busy_timeout, disk full…): retrying
                    # each ingest alone would only multiply the wait; everyone gets the error
                    if len(batch) == 1 or isinstance(exc, sqlite3.OperationalError):
                        for _, _, future in batch:
                            _settle(future, exc)
                        batch = []
                        continue
                    results = []
                    for pair in pairs:
                        try:
                            results.extend(await self._ingest_tx([pair]))
                        except Exception as one_exc:
                            results.append(one_exc)
                created: list[int] = []
                for (_, _, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
                    if isinstance(result, IngestResult) and result.created:
                        created.append(result.message.id)
                batch = []
                self._notify("message", created)
        except BaseException:
            # cancelled (loop shutdown): no caller may wait forever on a flush that is gone
            for _, _, future in [*batch, *self._pending_ingests]:
                future.cancel()
            self._pending_ingests = []
            raise

    async def _ingest_tx(
        self, pairs: Sequence[tuple[NewMessage, str | None]]
    ) -> list[IngestResult | _Conflict]:
        return await self._tx(lambda conn, now: _ingest_rows(conn, now, pairs))

    async def ingest_many(self, items: Sequence[NewMessage]) -> list[IngestResult]:
        """Ingest a batch in one transaction (one fsync); a conflict raises and rolls back all.

        The conflict itself is still recorded (in a transaction of its own), as for ``ingest``.
        """
        pairs = [(item, _encode_meta(item.meta)) for item in items]

        def run(conn: sqlite3.Connection, now: float) -> list[IngestResult]:
            out: list[IngestResult] = []
            for result in _ingest_rows(conn, now, pairs, record_conflicts=False):
                if isinstance(result, _Conflict):
                    raise result
                out.append(result)
            return out

        try:
            results = await self._tx(run)
        except _Conflict as conflict:
            found = conflict
        else:
            self._notify("message", [r.message.id for r in results if r.created])
            return results
        await self._tx(lambda conn, now: _record_conflict(conn, now, found))
        raise IdempotencyConflict(str(found))

    # ------------------------------------------------------------------ claim and lease

    async def claim_next(
        self,
        agent: str,
        owner: str,
        lease_seconds: float = 600.0,
        *,
        exclusive: bool = True,
    ) -> Message | None:
        """Lease the next message for ``agent``: control lane first, then oldest (FIFO).

        Skips conversations that already have a message in flight. With ``exclusive`` (one
        message in flight per agent session), returns None while the agent has one in flight.
        """

        def run(conn: sqlite3.Connection, now: float) -> Message | None:
            if (
                exclusive
                and conn.execute(
                    f"SELECT 1 FROM messages WHERE agent = ? AND state IN {_IN_FLIGHT_SQL} LIMIT 1",
                    (agent,),
                ).fetchone()
            ):
                return None
            row = conn.execute(
                "SELECT id FROM messages AS m WHERE agent = ? AND state = 'queued'"
                " AND NOT EXISTS (SELECT 1 FROM messages AS f WHERE f.agent = m.agent"
                f"   AND f.channel = m.channel AND f.conversation = m.conversation"
                f"   AND f.state IN {_IN_FLIGHT_SQL})"
                " ORDER BY priority DESC, id LIMIT 1",
                (agent,),
            ).fetchone()
            if row is None:
                return None
            claimed = conn.execute(
                "UPDATE messages SET state = 'claimed', fence = fence + 1, lease_owner = ?,"
                " lease_expires_at = ?, heartbeat_at = ?, updated_at = ?"
                " WHERE id = ? AND state = 'queued' RETURNING *",
                (owner, now + lease_seconds, now, now, row["id"]),
            ).fetchone()
            msg = Message.from_row(claimed)
            insert_event(
                conn,
                now,
                owner,
                "transition",
                message_id=msg.id,
                from_state="queued",
                to_state="claimed",
                attempt=msg.attempt,
                detail=f"fence={msg.fence}",
            )
            return msg

        msg = await self._tx(run)
        if msg is not None:
            self._notify("message", [msg.id])
        return msg

    async def heartbeat(self, message_id: int, fence: int, lease_seconds: float) -> Message:
        """Extend the lease of an in-flight message (the agent is making progress)."""

        def run(conn: sqlite3.Connection, now: float) -> Message:
            row = conn.execute(
                "UPDATE messages SET lease_expires_at = ?, heartbeat_at = ?"
                f" WHERE id = ? AND fence = ? AND state IN {_IN_FLIGHT_SQL} RETURNING *",
                (now + lease_seconds, now, message_id, fence),
            ).fetchone()
            if row is None:
                _refuse(conn, now, message_id, fence, "heartbeat", None)
            return Message.from_row(row)

        return await self._tx(run)

    # ------------------------------------------------------------------ fenced transitions

    async def mark_submitted(self, message_id: int, fence: int, actor: str = "host") -> Message:
        """Pasted and Enter pressed (weak accept)."""
        return await self._transition(message_id, fence, MessageState.SUBMITTED, actor)

    async def mark_accepted(
        self, message_id: int, fence: int, actor: str = "host", detail: str = ""
    ) -> Message:
        """The agent's own record shows the prompt."""
        return await self._transition(message_id, fence, MessageState.ACCEPTED, actor, detail)

    async def complete(
        self,
        message_id: int,
        fence: int,
        reply: str,
        actor: str = "host",
        *,
        queue_reply: bool = True,
        detail: str = "",
    ) -> Message:
        """The turn ended: record the reply and (same transaction) queue it in the outbox."""
        return await self._transition(
            message_id,
            fence,
            MessageState.COMPLETED,
            actor,
            detail,
            reply=reply,
            queue_reply=queue_reply,
        )

    async def fail(self, message_id: int, fence: int, reason: str, actor: str = "host") -> Message:
        """Permanent failure of an in-flight message."""
        return await self._transition(
            message_id, fence, MessageState.FAILED, actor, reason, reason=reason
        )

    async def _transition(
        self,
        message_id: int,
        fence: int,
        to: MessageState,
        actor: str,
        detail: str = "",
        *,
        reply: str | None = None,
        reason: str | None = None,
        queue_reply: bool = False,
    ) -> Message:
        outbox_ids: list[int] = []

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if current.fence != fence:
                _refuse(conn, now, message_id, fence, f"-> {to}", current)
            if current.state == to or (
                to in (MessageState.SUBMITTED, MessageState.ACCEPTED)
                and _rank(current.state) >= _rank(to)
            ):
                return current  # duplicate evidence (hook and transcript both report): no-op
            # A fenced move is only ever made by the lease holder, so it starts in flight: a
            # queued message (fence not handed out yet) must not be failed by a fence guess.
            if current.state not in IN_FLIGHT or to not in MESSAGE_TRANSITIONS[current.state]:
                _illegal(conn, now, current, to, actor)
            terminal = to in (MessageState.COMPLETED, MessageState.FAILED)
            row = conn.execute(
                "UPDATE messages SET state = ?, updated_at = ?,"
                " reply = COALESCE(?, reply), reason = COALESCE(?, reason),"
                " lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END,"
                " lease_expires_at = CASE WHEN ? THEN NULL ELSE lease_expires_at END"
                " WHERE id = ? AND fence = ? RETURNING *",
                (to, now, reply, reason, terminal, terminal, message_id, fence),
            ).fetchone()
            insert_event(
                conn,
                now,
                actor,
                "transition",
                message_id=message_id,
                from_state=current.state,
                to_state=to,
                attempt=current.attempt,
                detail=detail,
            )
            msg = Message.from_row(row)
            if to == MessageState.COMPLETED and queue_reply and reply:
                item = self._enqueue_in_tx(
                    conn,
                    now,
                    channel=msg.channel,
                    conversation=msg.conversation,
                    text=reply,
                    key=f"reply:{msg.id}",
                    message_id=msg.id,
                    reply_to=msg.platform_id,
                )
                outbox_ids.append(item.id)
            return msg

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        self._notify("outbox", outbox_ids)
        return msg

    # ------------------------------------------------------------------ recovery

    async def victims(
        self,
        owner: str | None = None,
        expired_before: float | None = None,
        agent: str | None = None,
    ) -> list[Message]:
        """In-flight messages of a dead session (by owner / agent) or with expired leases.

        Returned in original order (oldest first): that is the replay order.
        """
        clauses: list[str] = [f"state IN {_IN_FLIGHT_SQL}"]
        params: list[object] = []
        if owner is not None:
            clauses.append("lease_owner = ?")
            params.append(owner)
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        if expired_before is not None:
            clauses.append("lease_expires_at < ?")
            params.append(expired_before)
        sql = f"SELECT * FROM messages WHERE {' AND '.join(clauses)} ORDER BY id"

        def run(conn: sqlite3.Connection) -> list[Message]:
            return [Message.from_row(r) for r in conn.execute(sql, params)]

        return await self._read(run)

    async def requeue_victim(
        self,
        message_id: int,
        fence: int,
        reason: str,
        actor: str = "recovery",
        *,
        enforce_limit: bool = True,
    ) -> Message:
        """Put a victim back at the head of its conversation with attempt + 1.

        At the attempt limit it is quarantined instead, with a readable reason. A message that
        failed through no fault of its own (the agent was rate-limited) is requeued with
        ``enforce_limit=False``: the wait before its next attempt bounds the retries.
        """

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if current.fence != fence:
                _refuse(conn, now, message_id, fence, "requeue", current)
            if current.state not in IN_FLIGHT:
                _illegal(conn, now, current, MessageState.QUEUED, actor, "requeue: not in flight")
            if enforce_limit and current.attempt >= self.max_attempts:
                why = (
                    f"quarantined after {current.attempt} attempts"
                    f" (limit {self.max_attempts}); last: {reason}"
                )
                # bump the fence: the dead holder's fence must not match the quarantined row
                return _set_state(
                    conn,
                    now,
                    current,
                    MessageState.QUARANTINED,
                    actor,
                    why,
                    reason=why,
                    bump_fence=True,
                )
            return _requeue(
                conn, now, current, actor, attempt=current.attempt + 1, detail=f"replay: {reason}"
            )

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def release(
        self, message_id: int, fence: int, reason: str, actor: str = "host"
    ) -> Message:
        """Give a claimed message back unchanged (attempt kept): nothing reached the agent.

        Used when the input box held someone else's text or no box was on screen, so no
        keystroke of this message was sent; only a ``claimed`` message can be released.
        """

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if current.fence != fence:
                _refuse(conn, now, message_id, fence, "release", current)
            if current.state != MessageState.CLAIMED:
                _illegal(conn, now, current, MessageState.QUEUED, actor, "release: not claimed")
            return _requeue(
                conn, now, current, actor, attempt=current.attempt, detail=f"released: {reason}"
            )

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def quarantine(self, message_id: int, reason: str, actor: str = "recovery") -> Message:
        """Stop a queued or in-flight message and wait for a human."""
        return await self._human_move(message_id, MessageState.QUARANTINED, reason, actor)

    async def requeue_quarantined(self, message_id: int, actor: str = "human") -> Message:
        """A human decided to try a quarantined message again (attempts start over)."""

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if current.state != MessageState.QUARANTINED:
                _illegal(conn, now, current, MessageState.QUEUED, actor, "not quarantined")
            return _requeue(conn, now, current, actor, attempt=1, detail="requeued by a human")

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def drop(
        self, message_id: int, reason: str = "dropped by a human", actor: str = "human"
    ) -> Message:
        """Give up on a queued or quarantined message (state ``failed``)."""
        return await self._human_move(message_id, MessageState.FAILED, reason, actor)

    async def _human_move(
        self, message_id: int, to: MessageState, reason: str, actor: str
    ) -> Message:
        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if to not in MESSAGE_TRANSITIONS[current.state]:
                _illegal(conn, now, current, to, actor)
            return _set_state(conn, now, current, to, actor, reason, reason=reason, bump_fence=True)

        msg = await self._tx(run)
        self._notify("message", [msg.id])
        return msg

    async def note(self, message_id: int, actor: str, kind: str, detail: str) -> None:
        """Record an observation (a receipt, a warning) in a message's audit trail."""
        await self._tx(
            lambda conn, now: insert_event(
                conn, now, actor, kind, message_id=message_id, detail=detail
            )
        )

    # ------------------------------------------------------------------ reading

    async def get(self, message_id: int) -> Message:
        """One message; raises ``NotFound``."""
        return await self._read(lambda conn: _get(conn, message_id))

    async def find(self, channel: str, key: str) -> Message | None:
        """The message with idempotency key ``(channel, key)``, if any."""

        def run(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                "SELECT * FROM messages WHERE channel = ? AND platform_id = ?", (channel, key)
            ).fetchone()
            return Message.from_row(row) if row else None

        return await self._read(run)

    async def list_messages(
        self,
        state: str | None = None,
        limit: int = 1000,
        agent: str | None = None,
        conversation: str | None = None,
        channel: str | None = None,
    ) -> list[Message]:
        """Messages, newest last; filters are exact matches."""
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("state", state),
            ("agent", agent),
            ("conversation", conversation),
            ("channel", channel),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM (SELECT * FROM messages {where} ORDER BY id DESC LIMIT ?) ORDER BY id"

        def run(conn: sqlite3.Connection) -> list[Message]:
            return [Message.from_row(r) for r in conn.execute(sql, [*params, limit])]

        return await self._read(run)

    async def events_for(self, message_id: int) -> list[Event]:
        """The audit trail of one message (and of its outbox rows), oldest first."""

        def run(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT * FROM events WHERE message_id = ? OR outbox_id IN"
                " (SELECT id FROM outbox WHERE message_id = ?) ORDER BY id",
                (message_id, message_id),
            )
            return [Event.from_row(r) for r in rows]

        return await self._read(run)

    async def events_since(self, after_id: int, limit: int = 500) -> list[Event]:
        """Audit rows with id > ``after_id`` (live views tail this)."""

        def run(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            return [Event.from_row(r) for r in rows]

        return await self._read(run)

    async def stats(self) -> dict[str, Any]:
        """Counts for ``agentbridge status``: per agent and per state, oldest queued age."""
        now = self.clock()

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            agents: dict[str, dict[str, Any]] = {}
            for row in conn.execute(
                "SELECT agent, state, COUNT(*) AS n, MIN(created_at) AS oldest"
                " FROM messages WHERE state NOT IN ('completed', 'failed') GROUP BY agent, state"
            ):
                entry = agents.setdefault(
                    row["agent"],
                    {
                        "queued": 0,
                        "in_flight": 0,
                        "quarantined": 0,
                        "stale": 0,
                        "oldest_queued_age": None,
                    },
                )
                if row["state"] == "queued":
                    entry["queued"] = row["n"]
                    entry["oldest_queued_age"] = round(now - row["oldest"], 3)
                elif row["state"] == "quarantined":
                    entry["quarantined"] = row["n"]
                else:
                    entry["in_flight"] += row["n"]
            for row in conn.execute(
                f"SELECT agent, COUNT(*) AS n FROM messages WHERE state IN {_IN_FLIGHT_SQL}"
                " AND lease_expires_at < ? GROUP BY agent",
                (now,),
            ):
                agents.setdefault(
                    row["agent"],
                    {
                        "queued": 0,
                        "in_flight": 0,
                        "quarantined": 0,
                        "stale": 0,
                        "oldest_queued_age": None,
                    },
                )
                agents[row["agent"]]["stale"] = row["n"]
            states = {
                r["state"]: r["n"]
                for r in conn.execute("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
            }
            outbox = {
                r["state"]: r["n"]
                for r in conn.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            }
            return {"agents": agents, "messages": states, "outbox": outbox}

        return await self._read(run)

    async def prune(self, retention_seconds: float) -> tuple[int, int]:
        """Delete terminal messages/outbox rows (and their events) older than retention."""

        def run(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
            cutoff = now - retention_seconds
            # a finished message whose reply is still on its way (pending, sending, unknown)
            # keeps its row: the relay and a human reconciling it need the context
            prunable = (
                "SELECT id FROM messages AS m WHERE state IN ('completed', 'failed')"
                " AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM outbox AS o"
                " WHERE o.message_id = m.id AND o.state IN ('pending', 'sending', 'unknown'))"
            )
            conn.execute(f"DELETE FROM events WHERE message_id IN ({prunable})", (cutoff,))
            messages = conn.execute(
                f"DELETE FROM messages WHERE id IN ({prunable})", (cutoff,)
            ).rowcount
            conn.execute(
                "DELETE FROM events WHERE outbox_id IN (SELECT id FROM outbox WHERE state IN"
                " ('sent', 'failed', 'expired') AND updated_at < ?)",
                (cutoff,),
            )
            replies = conn.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'failed', 'expired')"
                " AND updated_at < ?",
                (cutoff,),
            ).rowcount
            return messages, replies

        return await self._tx(run)


# ---------------------------------------------------------------------- helpers (db thread)


async def _on_db_thread(db: aiosqlite.Connection, fn: Callable[[], T]) -> T:
    """Run ``fn`` on aiosqlite's connection thread: one hop for a whole transaction.

    aiosqlite's public calls cost one hop per statement; a transition is several statements.
    ``_execute`` has been aiosqlite's dispatch primitive since its first release.
    """
    return await db._execute(fn)  # type: ignore[no-untyped-call,no-any-return]


def _run_tx(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection, float], T], now: float
) -> T:
    """``BEGIN IMMEDIATE`` → ``fn`` → ``COMMIT``; roll back on error, commit refusals."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, now)
    except _CommitThenRaise as signal:
        conn.execute("COMMIT")
        raise signal.error from None
    except BaseException:
        # SQLite may already have rolled back (e.g. SQLITE_FULL): a second ROLLBACK would
        # raise and hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _set_wal(conn: sqlite3.Connection, timeout: float = 10.0) -> str:
    """Switch to WAL, retrying while another connection is switching the same fresh file.

    Changing the journal mode answers SQLITE_BUSY at once (the busy handler is not used),
    so two processes opening a new ledger together would otherwise fail at random.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # on the connection thread, not the event loop
        delay = min(delay * 2, 0.05)


def _configure(conn: sqlite3.Connection, synchronous: str, path: str) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    mode = _set_wal(conn)
    if str(mode).lower() != "wal":
        raise LedgerError(f"ledger {path}: could not switch to WAL (got {mode})")
    sync = {"full": "FULL", "normal": "NORMAL"}.get(synchronous.lower())
    if sync is None:
        raise LedgerError(f"ledger: synchronous must be 'full' or 'normal', not {synchronous!r}")
    conn.execute(f"PRAGMA synchronous = {sync}")
    if sys.platform == "darwin" and sync == "FULL":
        conn.execute("PRAGMA fullfsync = ON")  # macOS fsync does not reach the platter without it
    migrate(conn, path)


def _rank(state: MessageState) -> int:
    order = [
        MessageState.QUEUED,
        MessageState.CLAIMED,
        MessageState.SUBMITTED,
        MessageState.ACCEPTED,
        MessageState.COMPLETED,
    ]
    return order.index(state) if state in order else 99


def _get(conn: sqlite3.Connection, message_id: int) -> Message:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise NotFound(f"no message {message_id}")
    return Message.from_row(row)


def _refuse(
    conn: sqlite3.Connection,
    now: float,
    message_id: int,
    fence: int,
    what: str,
    current: Message | None,
) -> NoReturn:
    """Record a stale holder's refused transition, commit that record, and raise StaleLease."""
    current = current or _get(conn, message_id)
    if current.fence != fence:
        why = f"fence {fence} is stale (current {current.fence})"
    else:  # current fence, but the lease already ended (completed, failed…)
        why = f"fence {fence} holds no lease (message is {current.state})"
    insert_event(
        conn,
        now,
        "ledger",
        "refused",
        message_id=message_id,
        from_state=current.state,
        attempt=current.attempt,
        detail=f"{why}; refused {what}",
    )
    raise _CommitThenRaise(StaleLease(f"message {message_id}: {why}"))


def _illegal(
    conn: sqlite3.Connection,
    now: float,
    current: Message,
    to: MessageState,
    actor: str,
    why: str = "",
) -> NoReturn:
    """Record a move the state machine does not allow, commit that record, raise."""
    detail = f"illegal transition {current.state} -> {to}" + (f" ({why})" if why else "")
    insert_event(
        conn,
        now,
        actor,
        "refused",
        message_id=current.id,
        from_state=current.state,
        to_state=to,
        attempt=current.attempt,
        detail=detail,
    )
    raise _CommitThenRaise(IllegalTransition(f"message {current.id}: {detail}"))


def _requeue(
    conn: sqlite3.Connection,
    now: float,
    current: Message,
    actor: str,
    *,
    attempt: int,
    detail: str,
) -> Message:
    """Back to ``queued`` with no lease and a new fence (any old holder's fence is dead)."""
    row = conn.execute(
        "UPDATE messages SET state = 'queued', attempt = ?, fence = fence + 1, reason = NULL,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ? RETURNING *",
        (attempt, now, current.id),
    ).fetchone()
    insert_event(
        conn,
        now,
        actor,
        "transition",
        message_id=current.id,
        from_state=current.state,
        to_state=MessageState.QUEUED,
        attempt=attempt,
        detail=detail,
    )
    return Message.from_row(row)


def _set_state(
    conn: sqlite3.Connection,
    now: float,
    current: Message,
    to: MessageState,
    actor: str,
    detail: str,
    *,
    reason: str | None = None,
    bump_fence: bool = False,
) -> Message:
    row = conn.execute(
        "UPDATE messages SET state = ?, reason = ?, updated_at = ?, lease_owner = NULL,"
        " lease_expires_at = NULL, fence = fence + ? WHERE id = ? RETURNING *",
        (to, reason, now, 1 if bump_fence else 0, current.id),
    ).fetchone()
    insert_event(
        conn,
        now,
        actor,
        "transition",
        message_id=current.id,
        from_state=current.state,
        to_state=to,
        attempt=current.attempt,
        detail=detail,
    )
    return Message.from_row(row)


class _Conflict(IdempotencyConflict):
    """An idempotency conflict found inside a transaction, with what its event needs."""

    def __init__(self, item: NewMessage, message_id: int) -> None:
        super().__init__(
            f"idempotency key {item.key!r} on channel {item.channel!r} was already used"
            f" for message {message_id} with different text"
        )
        self.item = item
        self.message_id = message_id


def _encode_meta(meta: dict[str, Any] | None) -> str | None:
    return json.dumps(meta) if meta else None


def _record_conflict(conn: sqlite3.Connection, now: float, conflict: _Conflict) -> None:
    insert_event(
        conn,
        now,
        conflict.item.channel,
        "idempotency_conflict",
        message_id=conflict.message_id,
        detail=f"key {conflict.item.key!r} re-sent with different text",
    )


_INSERT_MESSAGE = (
    "INSERT INTO messages (channel, conversation, sender, platform_id, text, text_hash, agent,"
    " priority, state, meta, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,'queued',?,?,?)"
    " ON CONFLICT (channel, platform_id) DO NOTHING"
)
_INSERT_INGEST_EVENT = (
    "INSERT INTO events (message_id, at, actor, kind, to_state, attempt, detail)"
    " VALUES (?, ?, ?, 'transition', 'queued', 1, ?)"
)


def _ingest_rows(
    conn: sqlite3.Connection,
    now: float,
    items: Sequence[tuple[NewMessage, str | None]],
    *,
    record_conflicts: bool = True,
) -> list[IngestResult | _Conflict]:
    """Insert messages (inside the caller's transaction); conflicts are returned, not raised.

    The insert comes first (``ON CONFLICT DO NOTHING``): a new key, the common case, costs
    one statement, and the lookup runs only for a repeated key. A new row's ``Message`` is
    built from what was inserted (no ``RETURNING`` row to fetch and decode: that was a third
    of the batch cost), and the batch's event rows go in with one ``executemany``.
    """
    out: list[IngestResult | _Conflict] = []
    events: list[tuple[int, float, str, str]] = []
    for item, meta_json in items:
        digest = text_hash(item.text)
        cursor = conn.execute(
            _INSERT_MESSAGE,
            (
                item.channel,
                item.conversation,
                item.sender,
                item.key,
                item.text,
                digest,
                item.agent,
                item.priority,
                meta_json,
                now,
                now,
            ),
        )
        if cursor.rowcount == 1:
            mid = cursor.lastrowid
            assert mid is not None
            events.append((mid, now, item.channel, f"ingested from {item.sender}"))
            out.append(IngestResult(_new_message(mid, now, item, meta_json), created=True))
            continue
        row = conn.execute(
            "SELECT * FROM messages WHERE channel = ? AND platform_id = ?", (item.channel, item.key)
        ).fetchone()
        if row["text_hash"] == digest:
            out.append(IngestResult(Message.from_row(row), created=False))
            continue
        conflict = _Conflict(item, row["id"])
        if record_conflicts:
            _record_conflict(conn, now, conflict)
        out.append(conflict)
    if events:
        conn.executemany(_INSERT_INGEST_EVENT, events)
    return out


def _new_message(mid: int, now: float, item: NewMessage, meta_json: str | None) -> Message:
    """The ``Message`` a fresh insert stored (column defaults of migration 1: attempt 1,
    fence 0, no lease); ``meta`` round-trips through JSON exactly as a read would."""
    return Message(
        id=mid,
        channel=item.channel,
        conversation=item.conversation,
        sender=item.sender,
        platform_id=item.key,
        text=item.text,
        agent=item.agent,
        priority=item.priority,
        state=MessageState.QUEUED,
        attempt=1,
        fence=0,
        lease_owner=None,
        lease_expires_at=None,
        heartbeat_at=None,
        reply=None,
        reason=None,
        meta=json.loads(meta_json) if meta_json else {},
        created_at=now,
        updated_at=now,
    )


def _settle(
    future: asyncio.Future[IngestResult | IdempotencyConflict],
    result: IngestResult | IdempotencyConflict | Exception,
) -> None:
    if future.done():  # the caller was cancelled; its row (if any) is committed regardless
        return
    if isinstance(result, IdempotencyConflict) or not isinstance(result, Exception):
        future.set_result(result)
    else:
        future.set_exception(result)
