"""What the ledger remembers so that a replay is refused even after a restart or a prune.

Two small tables of migration 3. ``seen_nonces``: HMAC signatures the HTTP channel already
accepted, kept until their timestamp window has closed (after that the timestamp check alone
refuses them). ``idempotency_tombstones``: the idempotency key and content hash of every keyed
message that retention pruned, so a platform that redelivers late is still told "duplicate".
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agentbridge.ledger.core import LedgerCore
from agentbridge.models import Message, NewMessage
from agentbridge.states import MessageState

#: how long a pruned key still counts as a duplicate, when the caller does not say
DEFAULT_TOMBSTONE_SECONDS = 90 * 86400.0


@dataclass(frozen=True)
class Tombstone:
    """A pruned message's idempotency key: enough to answer a late duplicate."""

    message_id: int
    text_hash: str
    final_state: str
    pruned_at: float

    def as_message(self, item: NewMessage) -> Message:
        """The "already processed" answer: the original id and final state (its row is gone;
        the text is the caller's own, which has the same hash)."""
        return Message(
            id=self.message_id,
            channel=item.channel,
            conversation=item.conversation,
            sender=item.sender,
            platform_id=item.key,
            text=item.text,
            agent=item.agent,
            priority=0,
            state=MessageState(self.final_state),
            attempt=1,
            fence=0,
            lease_owner=None,
            lease_expires_at=None,
            heartbeat_at=None,
            reply=None,
            reason="already processed; its row was pruned by retention",
            meta={},
            created_at=self.pruned_at,
            updated_at=self.pruned_at,
        )


def find_tombstone(conn: sqlite3.Connection, channel: str, key: str | None) -> Tombstone | None:
    """The tombstone of ``(channel, key)``, if retention pruned that key's message."""
    if key is None:
        return None
    row = conn.execute(
        "SELECT message_id, text_hash, final_state, pruned_at FROM idempotency_tombstones"
        " WHERE channel = ? AND idem_key = ?",
        (channel, key),
    ).fetchone()
    return Tombstone(*row) if row else None


def bury(
    conn: sqlite3.Connection, now: float, prunable_sql: str, cutoff: float, keep_seconds: float
) -> None:
    """Inside prune's transaction: tombstone the keyed messages about to be deleted, and
    forget tombstones older than ``keep_seconds``."""
    conn.execute(
        "INSERT OR REPLACE INTO idempotency_tombstones (channel, idem_key, text_hash,"
        " message_id, final_state, pruned_at) SELECT channel, platform_id, text_hash, id, state, ?"
        f" FROM messages WHERE platform_id IS NOT NULL AND id IN ({prunable_sql})",
        (now, cutoff),
    )
    conn.execute("DELETE FROM idempotency_tombstones WHERE pruned_at < ?", (now - keep_seconds,))
    # audit rows of neither a message nor a reply: conflicts with a tombstoned key
    conn.execute(
        "DELETE FROM events WHERE message_id IS NULL AND outbox_id IS NULL AND at < ?", (cutoff,)
    )
    conn.execute("DELETE FROM seen_nonces WHERE expires_at < ?", (now,))


class ReplayMixin(LedgerCore):
    """Nonce method of ``Ledger``."""

    async def claim_nonce(self, scope: str, nonce: str, expires_at: float) -> bool:
        """Record ``nonce`` as used until ``expires_at``; False when it was already used.

        Committed before the caller acts on the request, so a restart cannot forget it.
        Expired nonces are dropped in the same transaction (the index makes that cheap).
        """

        def run(conn: sqlite3.Connection, now: float) -> bool:
            conn.execute("DELETE FROM seen_nonces WHERE expires_at < ?", (now,))
            cursor = conn.execute(
                "INSERT INTO seen_nonces (scope, nonce, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (scope, nonce) DO NOTHING",
                (scope, nonce, expires_at),
            )
            return cursor.rowcount == 1

        return await self._tx(run)
