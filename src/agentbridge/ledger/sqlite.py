"""The durable ledger: messages, leases, outbox, audit trail (permission prompts: a mixin).
Each public method is one SQLite transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) run as a single
function on aiosqlite's connection thread, so a transition and its event row commit together
and cost one thread hop. A method returns only after its commit: the return of ``ingest`` is
the ingress ack a channel may pass on to its platform. Group commits of ``ingest`` may run on
the loop thread instead while the disk is fast (see ``ledger_ingest``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from agentbridge.kinds import ChangeKind, ChangeListener
from agentbridge.ledger.access import access_problem, open_problem
from agentbridge.ledger.base import (
    IN_FLIGHT_SQL,
    IdempotencyConflict,
    IllegalTransition,
    IngestResult,
    LedgerError,
    NewMessage,
    NotFound,
    StaleLease,
    _configure,
    _get,
    _illegal,
    _on_db_thread,
    _rank,
    _refuse,
    _requeue,
    _run_tx,
    _set_state,
    insert_event,
    text_hash,
)
from agentbridge.ledger.ingest import IngestMixin, open_inline
from agentbridge.ledger.outbox import OutboxMixin
from agentbridge.ledger.permissions import PermissionMixin
from agentbridge.ledger.read import ReadMixin
from agentbridge.ledger.replay import ReplayMixin
from agentbridge.models import Message
from agentbridge.sanitize import clean_text
from agentbridge.states import IN_FLIGHT, MESSAGE_TRANSITIONS, TERMINAL, MessageState

log = logging.getLogger(__name__)
T = TypeVar("T")


class Ledger(IngestMixin, ReadMixin, OutboxMixin, ReplayMixin, PermissionMixin):
    """Async facade over one SQLite file. Open with ``await Ledger.open(path)``."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        inline: sqlite3.Connection | None = None,
    ) -> None:
        self._db = db
        self.path = path
        self.clock = clock
        self.max_attempts = max_attempts
        self._listeners: list[ChangeListener] = []
        self._init_ingest(inline)

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
        problem = access_problem(path)
        if problem is not None:
            raise LedgerError(problem)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(open_problem(path, exc)) from exc
        db.row_factory = sqlite3.Row
        try:
            await _on_db_thread(db, lambda: _configure(db._conn, synchronous, str(path)))
            inline = open_inline(str(path), synchronous)  # group commits while fsync is fast
        except sqlite3.Error as exc:  # read-only file or directory, not a database, locked…
            await db.close()
            raise LedgerError(open_problem(path, exc)) from exc
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
        return cls(db, path, clock=clock, max_attempts=max_attempts, inline=inline)

    async def close(self) -> None:
        """Close the connections once queued ingests have committed (their callers get acks)."""
        await self._close_ingest()
        await self._db.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(kind, id)`` after every committed change; returns an unsubscribe.

        ``kind`` is a ``ChangeKind`` (message or outbox). This is how the dispatcher and relay
        wake at once on an ingest instead of polling.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:  # idempotent: shutdown paths may call it twice
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, kind: str, ids: Iterable[int]) -> None:
        change = ChangeKind(kind)  # the mixins say "message" / "outbox"
        for ident in ids:
            for listener in list(self._listeners):
                try:
                    listener(change, ident)
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
                    f"SELECT 1 FROM messages WHERE agent = ? AND state IN {IN_FLIGHT_SQL} LIMIT 1",
                    (agent,),
                ).fetchone()
            ):
                return None
            row = conn.execute(
                "SELECT id FROM messages AS m WHERE agent = ? AND state = 'queued'"
                " AND NOT EXISTS (SELECT 1 FROM messages AS f WHERE f.agent = m.agent"
                f"   AND f.channel = m.channel AND f.conversation = m.conversation"
                f"   AND f.state IN {IN_FLIGHT_SQL})"
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
                f" WHERE id = ? AND fence = ? AND state IN {IN_FLIGHT_SQL} RETURNING *",
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
            reply=clean_text(reply),
            queue_reply=queue_reply,
        )

    async def fail(self, message_id: int, fence: int, reason: str, actor: str = "host") -> Message:
        """Permanent failure of an in-flight message."""
        return await self._transition(
            message_id, fence, MessageState.FAILED, actor, reason, reason=reason
        )

    async def interrupt(
        self, message_id: int, fence: int, detail: str, actor: str = "host"
    ) -> Message:
        """Someone interrupted the turn in the pane: end it ``interrupted`` (never replayed)."""
        return await self._transition(
            message_id, fence, MessageState.INTERRUPTED, actor, detail, reason=detail
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
            terminal = to in TERMINAL
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
        clauses: list[str] = [f"state IN {IN_FLIGHT_SQL}"]
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
        """A human decided to try a quarantined (or interrupted) message again (attempts start
        over)."""

        def run(conn: sqlite3.Connection, now: float) -> Message:
            current = _get(conn, message_id)
            if current.state not in (MessageState.QUARANTINED, MessageState.INTERRUPTED):
                why = "not quarantined or interrupted"
                _illegal(conn, now, current, MessageState.QUEUED, actor, why)
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


__all__ = [
    "IdempotencyConflict",
    "IllegalTransition",
    "IngestResult",
    "Ledger",
    "LedgerError",
    "NewMessage",
    "NotFound",
    "StaleLease",
    "insert_event",
    "text_hash",
]
