"""The small vocabularies plugins and callers see as strings: receipt, wait and change kinds.

Each is an ``enum.StrEnum``, so a member *is* its string (``ReceiptKind.WAITING == "waiting"``,
JSON and f-strings print the bare value): code written against the strings keeps working, and
new code gets a closed, typed set. Every member carries its own docstring (``member.__doc__``),
which ``docs/plugins.md`` shows and ``tests/test_docs.py`` keeps in step (``markdown_table``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Self


class DocumentedStrEnum(enum.StrEnum):
    """A ``StrEnum`` whose members are written ``NAME = "value", "what it means"``."""

    def __new__(cls, value: str, doc: str = "") -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member


class ReceiptKind(DocumentedStrEnum):
    """What the sender is told of their message's progress (``Receipt.status``)."""

    QUEUED = "queued", "stored durably (the ingress ack was given); waits for its agent"
    INJECTED = "injected", "pasted into the agent's pane and submitted"
    WORKING = "working", "the agent's own record shows it took the prompt; its turn runs"
    REPLIED = "replied", "the reply reached the sender's platform"
    FAILED = "failed", "gave up (quarantined, attempts ran out, or the reply was not delivered)"
    WAITING = "waiting", "held up, not lost: a rate limit, a permission prompt, a busy input box"
    INTERRUPTED = "interrupted", "someone stopped its turn in the agent's pane; not retried"


class WaitKind(DocumentedStrEnum):
    """Why an agent stopped taking messages without being restarted (senders get ``waiting``)."""

    RATE_LIMIT = "rate_limit", "the agent's API is rate-limited: dispatch resumes at its reset"
    PERMISSION = "permission", "the agent asks a person for permission in its pane"


class ChangeKind(DocumentedStrEnum):
    """What a ledger change notification (``LedgerStore.on_change``) is about."""

    MESSAGE = "message", "an inbound message was stored or changed state; the id is its id"
    OUTBOX = "outbox", "a reply row was queued or changed state; the id is the outbox row's id"


#: ``listener(kind, id)``: called after each committed change (on the event loop, must not block)
ChangeListener = Callable[[ChangeKind, int], None]


def markdown_table(kinds: type[DocumentedStrEnum]) -> str:
    """The ``| value | meaning |`` table of ``kinds`` exactly as ``docs/plugins.md`` has it."""
    rows = [f"| `{member.value}` | {member.__doc__} |" for member in kinds]
    return "\n".join(["| value | meaning |", "|---|---|", *rows])


__all__ = [
    "ChangeKind",
    "ChangeListener",
    "DocumentedStrEnum",
    "ReceiptKind",
    "WaitKind",
    "markdown_table",
]
