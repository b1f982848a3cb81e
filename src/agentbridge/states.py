"""Message and outbox states, and the one table of allowed transitions.

These names are public vocabulary (CLI, JSON, docs): do not rename them.
"""

from __future__ import annotations

import enum


class MessageState(enum.StrEnum):
    """Lifecycle of an inbound message."""

    #: durably stored, waiting for its turn (the ingress ack has been given)
    QUEUED = "queued"
    #: leased to one agent session, about to be injected
    CLAIMED = "claimed"
    #: pasted and Enter pressed (weak evidence: the agent may not have taken it)
    SUBMITTED = "submitted"
    #: the agent's own record (transcript or hook) shows the prompt
    ACCEPTED = "accepted"
    #: the agent's own record shows the turn ended; the reply is captured
    COMPLETED = "completed"
    #: permanently failed, with a reason
    FAILED = "failed"
    #: recovery could not prove it safe, or attempts ran out: waits for a human
    QUARANTINED = "quarantined"
    #: someone interrupted its turn in the agent's pane (Esc): a deliberate stop, never replayed
    #: (a human may requeue it with ``agentbridge quarantine requeue ID``)
    INTERRUPTED = "interrupted"


IN_FLIGHT = frozenset({MessageState.CLAIMED, MessageState.SUBMITTED, MessageState.ACCEPTED})
#: states a message leaves only by a human's decision (or never)
TERMINAL = frozenset({MessageState.COMPLETED, MessageState.FAILED, MessageState.INTERRUPTED})

#: every allowed (from → to); anything else is refused by the ledger
MESSAGE_TRANSITIONS: dict[MessageState, frozenset[MessageState]] = {
    MessageState.QUEUED: frozenset(
        {MessageState.CLAIMED, MessageState.QUARANTINED, MessageState.FAILED}
    ),
    MessageState.CLAIMED: frozenset(
        {
            MessageState.SUBMITTED,
            MessageState.ACCEPTED,
            MessageState.COMPLETED,
            MessageState.FAILED,
            MessageState.QUEUED,
            MessageState.QUARANTINED,
            MessageState.INTERRUPTED,
        }
    ),
    MessageState.SUBMITTED: frozenset(
        {
            MessageState.ACCEPTED,
            MessageState.COMPLETED,
            MessageState.FAILED,
            MessageState.QUEUED,
            MessageState.QUARANTINED,
            MessageState.INTERRUPTED,
        }
    ),
    MessageState.ACCEPTED: frozenset(
        {
            MessageState.COMPLETED,
            MessageState.FAILED,
            MessageState.QUEUED,
            MessageState.QUARANTINED,
            MessageState.INTERRUPTED,
        }
    ),
    MessageState.QUARANTINED: frozenset({MessageState.QUEUED, MessageState.FAILED}),
    MessageState.INTERRUPTED: frozenset({MessageState.QUEUED, MessageState.FAILED}),
    MessageState.COMPLETED: frozenset(),
    MessageState.FAILED: frozenset(),
}


class OutboxState(enum.StrEnum):
    """Lifecycle of an outgoing reply (write-ahead)."""

    #: waiting to be sent (not before ``scheduled_at``)
    PENDING = "pending"
    #: an attempt is reserved; the platform is being called
    SENDING = "sending"
    #: the platform accepted it (platform message id recorded)
    SENT = "sent"
    #: permanent error or retries exhausted
    FAILED = "failed"
    #: may or may not have arrived (the bridge died while sending, or the platform's answer
    #: was lost after the request went out): never blindly resent; reconciled or a human's call
    UNKNOWN = "unknown"
    #: its time to live ran out before it could be sent
    EXPIRED = "expired"


OUTBOX_TRANSITIONS: dict[OutboxState, frozenset[OutboxState]] = {
    OutboxState.PENDING: frozenset({OutboxState.SENDING, OutboxState.EXPIRED, OutboxState.FAILED}),
    OutboxState.SENDING: frozenset(
        {OutboxState.SENT, OutboxState.PENDING, OutboxState.FAILED, OutboxState.UNKNOWN}
    ),
    OutboxState.UNKNOWN: frozenset({OutboxState.PENDING, OutboxState.SENT, OutboxState.FAILED}),
    OutboxState.FAILED: frozenset({OutboxState.PENDING}),
    OutboxState.SENT: frozenset(),
    OutboxState.EXPIRED: frozenset(),
}
