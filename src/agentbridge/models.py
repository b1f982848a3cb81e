"""Frozen records read from the ledger; each knows how to build itself from a row."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Any

from agentbridge.states import IN_FLIGHT, MessageState, OutboxState


def _meta(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Message:
        """Build from a ``messages`` row."""
        return cls(
            id=row["id"],
            channel=row["channel"],
            conversation=row["conversation"],
            sender=row["sender"],
            platform_id=row["platform_id"],
            text=row["text"],
            agent=row["agent"],
            priority=row["priority"],
            state=MessageState(row["state"]),
            attempt=row["attempt"],
            fence=row["fence"],
            lease_owner=row["lease_owner"],
            lease_expires_at=row["lease_expires_at"],
            heartbeat_at=row["heartbeat_at"],
            reply=row["reply"],
            reason=row["reason"],
            meta=_meta(row["meta"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> OutboxItem:
        """Build from an ``outbox`` row."""
        return cls(
            id=row["id"],
            message_id=row["message_id"],
            channel=row["channel"],
            conversation=row["conversation"],
            text=row["text"],
            idem_key=row["idem_key"],
            reply_to=row["reply_to"],
            state=OutboxState(row["state"]),
            attempts=row["attempts"],
            scheduled_at=row["scheduled_at"],
            expires_at=row["expires_at"],
            platform_message_id=row["platform_message_id"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            parts_sent=row["parts_sent"],
        )

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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        """Build from an ``events`` row (by field name: a later migration may add columns)."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})

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
