"""Frozen records read from the ledger: plain data, no storage types.

How a row of a backend becomes one of these is the ledger's business
(:mod:`agentbridge.ledger.records`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from agentbridge.states import IN_FLIGHT, MessageState, OutboxState


@dataclass(frozen=True)
class Message:
    """An inbound message and its lease."""

    id: int
    channel: str
    conversation: str
    sender: str
    platform_id: str | None
    text: str
    agent: str
    priority: int
    state: MessageState
    attempt: int
    fence: int
    lease_owner: str | None
    lease_expires_at: float | None
    heartbeat_at: float | None
    reply: str | None
    reason: str | None
    meta: dict[str, Any]
    created_at: float
    updated_at: float

    @property
    def in_flight(self) -> bool:
        """Claimed, submitted or accepted: owned by an agent session under a lease."""
        return self.state in IN_FLIGHT

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape (``agentbridge messages --json``)."""
        data = asdict(self)
        data["state"] = str(self.state)
        return data


@dataclass(frozen=True)
class OutboxItem:
    """One write-ahead reply row."""

    id: int
    message_id: int | None
    channel: str
    conversation: str
    text: str
    idem_key: str
    reply_to: str | None
    state: OutboxState
    attempts: int
    scheduled_at: float
    expires_at: float
    platform_message_id: str | None
    last_error: str | None
    created_at: float
    updated_at: float
    parts_sent: int = 0  #: parts of a chunked reply already accepted by the platform
    node: str | None = None  #: the fleet node whose relay reserved the last send attempt

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape."""
        data = asdict(self)
        data["state"] = str(self.state)
        return data


@dataclass(frozen=True)
class Event:
    """One audit-trail row: a transition, a refusal, a note."""

    id: int
    message_id: int | None
    outbox_id: int | None
    at: float
    actor: str
    kind: str
    from_state: str | None
    to_state: str | None
    attempt: int | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape."""
        return asdict(self)


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
