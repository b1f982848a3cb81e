"""Receipts as reactions on the sender's message: 👀 working, ✅ replied, ⚠️ failed, ⏳ waiting.

Best effort: a reaction that fails (missing scope, message deleted, rate limit) is logged at
debug level and forgotten; a receipt must never hold up or break the pipeline.
"""

from __future__ import annotations

import logging
import re

from agentbridge.kinds import ReceiptKind
from agentbridge.plugin.protocols import Receipt
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)
_TS = re.compile(r"\d+\.\d+")

#: receipt → (reaction to add, reactions to take away); None = nothing shown
REACTIONS: dict[ReceiptKind, tuple[str | None, tuple[str, ...]]] = {
    ReceiptKind.QUEUED: (None, ()),
    ReceiptKind.INJECTED: ("eyes", ("hourglass_flowing_sand",)),
    ReceiptKind.WORKING: ("eyes", ("hourglass_flowing_sand",)),
    ReceiptKind.REPLIED: ("white_check_mark", ("eyes", "hourglass_flowing_sand")),
    ReceiptKind.FAILED: ("warning", ("eyes", "hourglass_flowing_sand")),
    ReceiptKind.WAITING: ("hourglass_flowing_sand", ()),
    ReceiptKind.INTERRUPTED: ("warning", ("eyes", "hourglass_flowing_sand")),
}


def origin(receipt: Receipt) -> tuple[str, str] | None:
    """(channel id, ts) of the sender's message from our key ``"<channel>:<ts>"``."""
    key = receipt.platform_message_id or ""
    channel, _, ts = key.partition(":")
    if not channel or _TS.fullmatch(ts) is None:  # a click or a command: no message to mark
        return None
    return channel, ts


async def send(web: AsyncWebClient | None, receipt: Receipt) -> None:
    """Show one receipt; never raises."""
    try:
        target = origin(receipt)
        if web is None or target is None:
            return
        add, remove = REACTIONS.get(ReceiptKind(receipt.status), (None, ()))
        channel, ts = target
        for name in remove:
            try:
                await web.reactions_remove(channel=channel, timestamp=ts, name=name)
            except Exception as exc:  # no_reaction is the usual answer
                log.debug("slack: reaction %s not removed: %s", name, type(exc).__name__)
        if add is not None:
            await web.reactions_add(channel=channel, timestamp=ts, name=add)
    except Exception as exc:
        log.debug("slack: receipt %s not shown: %s", receipt.status, type(exc).__name__)
