"""MCP asks in a fleet: the question is asked on the agent's node, answered on any node.

An ask is a ledger row (``asks``), so the answer may be typed into a conversation served by
another node: that node's relay must know the ask is pending there (its cache of pending asks
was loaded once, before the other node's agent asked), and the waiting tool, on the agent's
node, must see the row settle (no notification crosses nodes for asks; the waiter reads the
row at least every :data:`POLL` seconds). With SQLite (one node) neither applies.
"""

from __future__ import annotations

from agentbridge.ledger.store import AskState, LedgerStore

#: a fleet node's waiting tool reads its ask's row at least this often
POLL = 0.25


def shared(ledger: LedgerStore) -> bool:
    """A fleet node's store (other nodes write asks and answers too)."""
    return ledger.fences.node is not None


async def pending_ids(ledger: LedgerStore, channel: str, conversation: str) -> list[int] | None:
    """A fleet node: the asks pending in this conversation, oldest first, as the ledger says
    now (another node's agent may have asked); None on a lone node (its cache is right)."""
    if not shared(ledger):
        return None
    rows = await ledger.list_asks(AskState.PENDING, channel=channel, conversation=conversation)
    return [a.id for a in rows]


def take_answers(supervisor: object) -> None:
    """A fleet node takes answers typed with ``agentbridge send`` from the start, not once
    its own agent asked (the relay wraps the socket's ``send`` lazily on a lone node)."""
    relay = getattr(supervisor, "ask_relay", None)
    if relay is not None:
        relay._wrap_send()


def step(ledger: LedgerStore, seconds: float) -> float:
    """How long the waiting tool may sleep before it reads its ask's row again."""
    return min(seconds, POLL) if shared(ledger) else seconds


__all__ = ["POLL", "pending_ids", "shared", "step", "take_answers"]
