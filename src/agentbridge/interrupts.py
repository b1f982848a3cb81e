"""An interrupted turn (Esc in the agent's pane) ends its message ``interrupted``: not a retry.

Whoever pressed Esc stopped that turn on purpose, so replaying it would run again what they
stopped. The message ends ``interrupted`` (a human may requeue it) and its sender gets an
``interrupted`` receipt. Claude Code puts the interrupted prompt back into its input box; that
text is the bridge's own, so it is cleared, else the next message could not be pasted. Only a
crash replays a message (``recovery``), and a turn the transcript shows interrupted is not
replayed there either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agentbridge.injector import text_visible
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger_store import LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.receipts import Receipts
from agentbridge.sanitize import sanitize_text

log = logging.getLogger(__name__)

#: the receipt's detail and the message's reason
INTERRUPTED_DETAIL = "interrupted in the agent's pane"


async def end_interrupted(
    ledger: LedgerStore, receipts: Receipts, session: Any, message: Message
) -> None:
    """Record the interrupt (fenced: only the lease holder may), tell the sender, tidy the box."""
    try:
        moved = await ledger.interrupt(
            message.id, message.fence, INTERRUPTED_DETAIL, actor=session.owner
        )
    except LedgerError as exc:
        log.warning("message %s: interrupt not recorded: %s", message.id, exc)
        return
    log.info("message %s: %s (not replayed)", message.id, INTERRUPTED_DETAIL)
    receipts.emit(moved, ReceiptKind.INTERRUPTED, INTERRUPTED_DETAIL)
    await clear_restored_prompt(session, message)


def _is_ours(box: str, message: Message) -> bool:
    """The box shows this message's envelope header or the end of its text."""
    squashed = "".join(box.split())
    return f"agentbridgemessage={message.id}" in squashed or text_visible(
        box, sanitize_text(message.text)
    )


async def clear_restored_prompt(session: Any, message: Message, within: float = 1.0) -> bool:
    """Clear the prompt the CLI put back after Esc, only when it is ours. True when cleared."""
    injector = getattr(session, "injector", None)
    if injector is None:
        return False
    deadline = time.monotonic() + within
    while True:
        try:
            box = await injector.read_box()
        except Exception:
            return False
        if box and _is_ours(box, message):
            cleared: bool = await injector.clear_box()
            log.info("message %s: cleared the interrupted prompt from the box", message.id)
            return cleared
        if time.monotonic() > deadline:
            return False  # nothing restored (or a human's draft): leave it alone
        await asyncio.sleep(0.05)
