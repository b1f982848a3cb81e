"""Frozen records read from the ledger; each knows how to build itself from a row."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from agentbridge.states import IN_FLIGHT, MessageState, OutboxState

_T = TypeVar("_T")


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
        return _build(
            cls,
            _MESSAGE_FIELDS,
            (
                row["id"],
                row["channel"],
                row["conversation"],
                row["sender"],
                row["platform_id"],
                row["text"],
                row["agent"],
                row["priority"],
                MessageState(row["state"]),
                row["attempt"],
                row["fence"],
                row["lease_owner"],
                row["lease_expires_at"],
                row["heartbeat_at"],
                row["reply"],
                row["reason"],
                _meta(row["meta"]),
                row["created_at"],
                row["updated_at"],
            ),
        )

    @classmethod
    def queued(
        cls,
        mid: int,
        now: float,
        row: tuple[str, str, str, str | None, str, str, int, str | None],
    ) -> Message:
        """The ``Message`` a fresh ingest stored, from its row ``(channel, conversation,
        sender, key, text, agent, priority, meta_json)`` and migration 1's column defaults
        (attempt 1, fence 0, no lease); ``meta`` round-trips through JSON as a read would."""
        channel, conversation, sender, key, text, agent, priority, meta_json = row
        meta = json.loads(meta_json) if meta_json else {}
        queued = MessageState.QUEUED
        values = (mid, channel, conversation, sender, key, text, agent, priority, queued, 1, 0)
        return _build(cls, _MESSAGE_FIELDS, (*values, None, None, None, None, None, meta, now, now))

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape (``agentbridge messages --json``)."""
        data = asdict(self)
        data["state"] = str(self.state)
        return data


_MESSAGE_FIELDS = tuple(f.name for f in fields(Message))


def _build(cls: type[_T], names: tuple[str, ...], values: tuple[Any, ...]) -> _T:
    """A frozen dataclass instance from its field values in order, without ``__init__``.

    The generated ``__init__`` of a frozen dataclass costs one ``object.__setattr__`` per
    field (19 for a ``Message``): a tenth of a lone ingest's Python time. Callers pass every
    field, so the instance is the one ``__init__`` would make (tests compare both).
    """
    obj = object.__new__(cls)
    obj.__dict__.update(zip(names, values, strict=True))
    return obj


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
