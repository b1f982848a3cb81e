"""Rows of the ledger's tables as the frozen records of :mod:`agentbridge.models`.

Why here and not on the records: only the ledger knows its column names and its driver's row
type; the records stay plain data that any backend (or a test) builds. A row is anything
indexed by column name (``sqlite3.Row``, a dict row of another driver).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Protocol, TypeVar

from agentbridge.models import Event, Message, OutboxItem
from agentbridge.states import MessageState, OutboxState

__all__ = ["Row", "event_from_row", "message_from_row", "outbox_from_row", "queued_message"]

_T = TypeVar("_T")


class Row(Protocol):
    """A result row, read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def _meta(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


def _build(cls: type[_T], names: tuple[str, ...], values: tuple[Any, ...]) -> _T:
    """A frozen dataclass instance from its field values in order, without ``__init__``.

    The generated ``__init__`` of a frozen dataclass costs one ``object.__setattr__`` per
    field (19 for a ``Message``): a tenth of a lone ingest's Python time. Callers pass every
    field, so the instance is the one ``__init__`` would make (tests compare both).
    """
    obj = object.__new__(cls)
    obj.__dict__.update(zip(names, values, strict=True))
    return obj


_MESSAGE_FIELDS = tuple(f.name for f in fields(Message))
_OUTBOX_FIELDS = tuple(f.name for f in fields(OutboxItem))
_EVENT_FIELDS = tuple(f.name for f in fields(Event))


def message_from_row(row: Row) -> Message:
    """A ``Message`` from a ``messages`` row."""
    return _build(
        Message,
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


def queued_message(
    mid: int, now: float, row: tuple[str, str, str, str | None, str, str, int, str | None]
) -> Message:
    """The ``Message`` a fresh ingest stored, from its row ``(channel, conversation, sender,
    key, text, agent, priority, meta_json)`` and migration 1's column defaults (attempt 1,
    fence 0, no lease); ``meta`` round-trips through JSON as a read would."""
    channel, conversation, sender, key, text, agent, priority, meta_json = row
    queued = MessageState.QUEUED
    values = (mid, channel, conversation, sender, key, text, agent, priority, queued, 1, 0)
    return _build(
        Message,
        _MESSAGE_FIELDS,
        (*values, None, None, None, None, None, _meta(meta_json), now, now),
    )


def outbox_from_row(row: Row) -> OutboxItem:
    """An ``OutboxItem`` from an ``outbox`` row (by field name, as events)."""
    values = {name: row[name] for name in _OUTBOX_FIELDS}
    values["state"] = OutboxState(values["state"])
    return OutboxItem(**values)


def event_from_row(row: Row) -> Event:
    """An ``Event`` from an ``events`` row (by field name: a later migration may add columns)."""
    return Event(**{name: row[name] for name in _EVENT_FIELDS})
