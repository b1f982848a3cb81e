"""The ledger as the rest of the bridge sees it: one Protocol, whatever database is behind it.

``LedgerStore`` is every operation the supervisor, dispatcher, relay, recovery, CLI and status
use; ``ChannelLedger`` is the narrower part a channel plugin may touch (reads, the change feed,
nonces, a human's requeue/drop). Both were derived from the callers: PostgreSQL implements
exactly what is used and passes the same contract suite (``testing.ledger_contract``).
``open_ledger(url)`` picks the backend; errors and records are re-exported here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from agentbridge.kinds import ChangeKind, ChangeListener
from agentbridge.ledger.asks import Ask, AskState, AskStore
from agentbridge.ledger.base import (
    IdempotencyConflict,
    IllegalTransition,
    IngestResult,
    LedgerError,
    NewMessage,
    NotFound,
    StaleLease,
    text_hash,
)
from agentbridge.ledger.nodes import FleetLedger, Lease, Node, NodeTaken, OwnerLost
from agentbridge.ledger.outbox import DEFAULT_BACKOFF, DEFAULT_TTL, backoff_delay
from agentbridge.ledger.permissions import PermissionRequest, PermissionState
from agentbridge.ledger.postgres.url import is_postgres_url
from agentbridge.ledger.replay import DEFAULT_TOMBSTONE_SECONDS

if TYPE_CHECKING:
    from agentbridge.models import Event, Message, OutboxItem


class ChannelLedger(Protocol):
    """What a channel plugin may use of the ledger (``ChannelContext.ledger``).

    Writes of inbound messages go through ``ctx.ingest`` (which routes), never through here;
    a channel reads state for its own views and long polls, and relays a human's decision.
    """

    #: the ledger's clock (seconds since the epoch): the time every row is stamped with
    clock: Callable[[], float]

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(kind, id)`` after every committed change; returns an unsubscribe."""
        ...

    async def get(self, message_id: int) -> Message:
        """One message; raises ``NotFound``."""
        ...

    async def find(self, channel: str, key: str) -> Message | None:
        """The message with idempotency key ``(channel, key)``, if any."""
        ...

    async def list_messages(
        self,
        state: str | None = None,
        limit: int = 1000,
        agent: str | None = None,
        conversation: str | None = None,
        channel: str | None = None,
    ) -> list[Message]:
        """The newest ``limit`` messages matching every filter given, oldest first."""
        ...

    async def events_for(self, message_id: int) -> list[Event]:
        """The audit trail of one message and of its replies, oldest first."""
        ...

    async def events_since(self, after_id: int, limit: int = 500) -> list[Event]:
        """Audit rows with id > ``after_id``, oldest first (live views tail this)."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Counts for ``status``: ``agents`` (per agent), ``messages`` and ``outbox`` by state."""
        ...

    async def get_reply(self, outbox_id: int) -> OutboxItem:
        """One outbox row; raises ``NotFound``."""
        ...

    async def list_replies(
        self, state: str | None = None, message_id: int | None = None, limit: int = 1000
    ) -> list[OutboxItem]:
        """Outbox rows, oldest first."""
        ...

    async def claim_nonce(self, scope: str, nonce: str, expires_at: float) -> bool:
        """Record ``nonce`` as used until ``expires_at``; False when it was used already."""
        ...

    async def requeue_quarantined(self, message_id: int, actor: str = "human") -> Message:
        """A human tries a quarantined or interrupted message again (attempts start over)."""
        ...

    async def drop(
        self, message_id: int, reason: str = "dropped by a human", actor: str = "human"
    ) -> Message:
        """A human gives up on a queued or quarantined message (``failed``)."""
        ...

    async def note(self, message_id: int, actor: str, kind: str, detail: str) -> None:
        """Record an observation (a receipt, a warning) in a message's audit trail."""
        ...

    # the console's pending view reads these (declared again, in place, on LedgerStore)
    async def get_permission(self, short_id: str) -> PermissionRequest | None: ...

    async def list_permissions(
        self, state: PermissionState | None = None, message_id: int | None = None, limit: int = 100
    ) -> list[PermissionRequest]: ...


class LedgerStore(ChannelLedger, AskStore, FleetLedger, Protocol):
    """The one interface to the ledger: every transition commits before its method returns.

    Fenced moves (``mark_*``, ``complete``, ``fail``, ``interrupt``, ``heartbeat``,
    ``requeue_victim``, ``release``) present the ``fence`` the claim handed out and raise
    ``StaleLease`` when it is no longer current; moves the state machine forbids raise
    ``IllegalTransition``. Both refusals are recorded in the audit trail.
    """

    async def close(self) -> None:
        """Close once queued ingests have committed (their callers get their acks)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    # ---------------------------------------------------------------- ingest

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
        """Durably store one inbound message (the return is the ingress ack); idempotent on
        ``(channel, key)``, also after retention pruned the row; ``IdempotencyConflict`` when
        the key comes back with other text."""
        ...

    async def ingest_many(self, items: Sequence[NewMessage]) -> list[IngestResult]:
        """Ingest a batch in one transaction; a conflict rolls all of it back and raises."""
        ...

    # ---------------------------------------------------------------- claim, lease, transitions

    async def claim_next(
        self, agent: str, owner: str, lease_seconds: float = 600.0, *, exclusive: bool = True
    ) -> Message | None:
        """Lease the next message for ``agent`` (priority lane first, then FIFO), skipping
        conversations with one in flight; the claim bumps the fence."""
        ...

    async def heartbeat(self, message_id: int, fence: int, lease_seconds: float) -> Message:
        """Extend the lease of an in-flight message."""
        ...

    async def mark_submitted(self, message_id: int, fence: int, actor: str = "host") -> Message:
        """Pasted and Enter pressed (weak evidence); repeated evidence is a no-op."""
        ...

    async def mark_accepted(
        self, message_id: int, fence: int, actor: str = "host", detail: str = ""
    ) -> Message:
        """The agent's own record shows the prompt."""
        ...

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
        """The turn ended: store the reply and, in the same commit, queue it in the outbox."""
        ...

    async def fail(self, message_id: int, fence: int, reason: str, actor: str = "host") -> Message:
        """Permanent failure of an in-flight message."""
        ...

    async def interrupt(
        self, message_id: int, fence: int, detail: str, actor: str = "host"
    ) -> Message:
        """Someone stopped the turn in the pane: ``interrupted``, never replayed."""
        ...

    # ---------------------------------------------------------------- recovery

    async def victims(
        self,
        owner: str | None = None,
        expired_before: float | None = None,
        agent: str | None = None,
    ) -> list[Message]:
        """In-flight messages of a dead session (by owner / agent) or with expired leases,
        oldest first: the replay order."""
        ...

    async def requeue_victim(
        self,
        message_id: int,
        fence: int,
        reason: str,
        actor: str = "recovery",
        *,
        enforce_limit: bool = True,
    ) -> Message:
        """Replay: back to the head of its conversation with attempt + 1, or quarantined at the
        attempt limit."""
        ...

    async def release(
        self, message_id: int, fence: int, reason: str, actor: str = "host"
    ) -> Message:
        """Give a ``claimed`` message back unchanged (nothing reached the agent)."""
        ...

    async def quarantine(self, message_id: int, reason: str, actor: str = "recovery") -> Message:
        """Stop a queued or in-flight message until a human decides."""
        ...

    async def prune(
        self, retention_seconds: float, tombstone_seconds: float = DEFAULT_TOMBSTONE_SECONDS
    ) -> tuple[int, int]:
        """Retention: delete finished messages, replies and asks older than
        ``retention_seconds`` (keys stay as tombstones); returns (messages, replies) removed."""
        ...

    # ---------------------------------------------------------------- outbox

    async def enqueue_reply(
        self,
        channel: str,
        conversation: str,
        text: str,
        key: str,
        message_id: int | None = None,
        reply_to: str | None = None,
        scheduled_at: float | None = None,
        ttl: float = DEFAULT_TTL,
    ) -> OutboxItem:
        """Write a reply ahead of sending; the same key returns the existing row."""
        ...

    async def claim_due_reply(
        self, channels: Sequence[str] | None = None, now: float | None = None
    ) -> OutboxItem | None:
        """Reserve the oldest due pending reply (``sending``, attempts + 1)."""
        ...

    async def next_due_reply(
        self, now: float | None = None, channels: Sequence[str] | None = None
    ) -> OutboxItem | None:
        """Peek at the oldest due pending reply without reserving it."""
        ...

    async def reserve_send(self, outbox_id: int) -> OutboxItem:
        """Reserve one attempt of a ``pending`` row (else ``IllegalTransition``)."""
        ...

    async def next_reply_due_at(self) -> float | None:
        """When the next pending reply becomes due."""
        ...

    async def mark_sent(self, outbox_id: int, platform_message_id: str | None) -> OutboxItem:
        """The platform accepted the reply."""
        ...

    async def mark_part_sent(
        self, outbox_id: int, parts_sent: int, platform_message_id: str | None
    ) -> OutboxItem:
        """A part of a chunked reply landed: a retry resumes after it."""
        ...

    async def mark_retry(self, outbox_id: int, error: str, delay: float) -> OutboxItem:
        """A transient failure of a ``sending`` row: ``pending`` again after ``delay``."""
        ...

    async def mark_failed(self, outbox_id: int, error: str) -> OutboxItem:
        """A permanent failure, or retries exhausted."""
        ...

    async def retry_reply(self, outbox_id: int, actor: str = "human") -> OutboxItem:
        """Send again (a human, or a reconcile that proved it never arrived)."""
        ...

    async def expire_replies(self) -> int:
        """Pending replies past their time to live become ``expired``; returns how many."""
        ...

    async def mark_unknown(
        self, outbox_id: int, detail: str = "outcome unknown", error: str | None = None
    ) -> OutboxItem:
        """The reserved send's outcome cannot be known: never resent without a decision."""
        ...

    async def recover_sending(self, *, own: bool = True) -> list[OutboxItem]:
        """Dead nodes' (and, ``own``, this node's last run's) ``sending`` rows: ``unknown``."""
        ...

    async def resume_reply(
        self,
        outbox_id: int,
        parts_sent: int,
        platform_message_id: str | None = None,
        actor: str = "reconcile",
    ) -> OutboxItem:
        """An ``unknown`` row goes back to ``pending`` from part ``parts_sent``."""
        ...

    async def mark_landed(
        self, outbox_id: int, platform_message_id: str | None = None, actor: str = "human"
    ) -> OutboxItem:
        """An ``unknown`` reply did arrive: ``sent``."""
        ...

    # ---------------------------------------------------------------- permission prompts

    async def open_permission(
        self,
        message_id: int | None,
        agent: str,
        tool: str,
        summary: str,
        expires_at: float,
        *,
        can_always: bool = False,
    ) -> PermissionRequest:
        """Record a ``pending`` request with a short id unique among pending ones (and a
        ``permission_asked`` event on the message)."""
        ...

    async def answer_permission(
        self, short_id: str, state: PermissionState, answered_by: str, *, always: bool = False
    ) -> tuple[PermissionRequest, bool]:
        """First answer wins: decide the newest request with ``short_id`` if still pending
        (``permission_answered`` event); ``(row, False)`` when it was decided already;
        ``NotFound`` for an id never handed out."""
        ...

    async def get_permission(self, short_id: str) -> PermissionRequest | None:
        """The newest request that had ``short_id``."""
        ...

    async def list_permissions(
        self,
        state: PermissionState | None = None,
        message_id: int | None = None,
        limit: int = 100,
    ) -> list[PermissionRequest]:
        """Requests matching every filter given, oldest first."""
        ...


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


async def open_ledger(
    url: str | Path,
    *,
    synchronous: str = "full",
    clock: Callable[[], float] = time.time,
    max_attempts: int = 3,
) -> LedgerStore:
    """Open the ledger ``url`` names: a path or ``sqlite:///path`` (SQLite, the default), or
    ``postgresql://…`` / ``postgres://…`` (PostgreSQL, for several supervisors).

    ``sqlite://`` is followed by the path as written (``sqlite:///var/lib/ab/ledger.db``;
    SQLAlchemy's four-slash spelling of an absolute path works too). No error ever repeats a
    URL's password. ``synchronous`` is SQLite's; PostgreSQL's commits are the server's
    (``synchronous_commit``).
    """
    if isinstance(url, str) and is_postgres_url(url):
        try:
            from agentbridge.ledger.postgres.core import PostgresLedger
        except ImportError:  # pragma: no cover - installed without the extra
            raise LedgerError(
                "ledger: a PostgreSQL ledger needs psycopg: pip install 'agentbridge[postgres]'"
            ) from None
        return await PostgresLedger.open(url, clock=clock, max_attempts=max_attempts)
    path = _sqlite_path(url)
    from agentbridge.ledger.sqlite import Ledger

    return await Ledger.open(path, synchronous=synchronous, clock=clock, max_attempts=max_attempts)


def _sqlite_path(url: str | Path) -> Path:
    """The SQLite file ``url`` names, or ``LedgerError`` for any other scheme."""
    if isinstance(url, Path):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return Path(url).expanduser()
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.strip("/"):
            raise LedgerError("ledger: sqlite:// needs a file path, e.g. sqlite:///path/ledger.db")
        if rest.startswith("//"):  # sqlite:////abs/path (SQLAlchemy)
            rest = rest[1:]
        return Path(rest).expanduser()
    raise LedgerError(
        f"ledger: unknown ledger URL scheme {scheme!r}"
        " (use a path, sqlite:///path or postgresql://host/database)"
    )


__all__ = [
    "DEFAULT_BACKOFF",
    "Ask",
    "AskState",
    "ChangeKind",
    "ChangeListener",
    "ChannelLedger",
    "IdempotencyConflict",
    "IllegalTransition",
    "IngestResult",
    "Lease",
    "LedgerError",
    "LedgerStore",
    "NewMessage",
    "Node",
    "NodeTaken",
    "NotFound",
    "OwnerLost",
    "PermissionRequest",
    "PermissionState",
    "StaleLease",
    "backoff_delay",
    "open_ledger",
    "text_hash",
]
