"""An interrupted turn (Esc in the agent's pane) ends its message ``interrupted``: not a retry.

Whoever pressed Esc stopped that turn on purpose, so replaying it would run again what they
stopped. The message ends ``interrupted`` (a human may requeue it) and its sender gets an
``interrupted`` receipt. Only a crash replays a message (``recovery``), and a turn the
transcript shows interrupted is not replayed there either.

The evidence, strongest first: the transcript's own interrupt record (Claude's "[Request
interrupted by user" line once an answer has begun, Codex's ``turn_aborted``). Claude Code
2.1.197 writes nothing when Esc comes before the first token of the answer: no interrupt line,
no turn end, no hook (Stop, StopFailure and every other hook stay silent; measured); it rewinds
the turn, puts the prompt back into its input box and goes idle. So the one rule that reads the
screen (:func:`prompt_put_back`) is narrow: the agent's own record accepted this attempt, the
agent says it is idle, no turn end came, and its input box *starts with this attempt's
envelope*, on two screen checks a second apart. A normal turn never puts its prompt back.

The prompt put back is the bridge's own text, so it is cleared, else the next message could not
be pasted: with the profile's ``clear_input_key`` (Claude: one Ctrl-C empties the whole box,
where C-u only empties one line, or nothing when the cursor sits at the start; a second Ctrl-C
within 800 ms would quit Claude, so it is never pressed twice within :data:`CTRL_C_GAP`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agentbridge.agent.injector import text_visible
from agentbridge.delivery.receipts import Receipts
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.plugin.protocols import ScreenKind, ScreenState
from agentbridge.sanitize import sanitize_text

log = logging.getLogger(__name__)

#: the receipt's detail and the message's reason
INTERRUPTED_DETAIL = "interrupted in the agent's pane"
#: the audit note of an interrupt read from the screen (weak evidence)
PUT_BACK_DETAIL = (
    "weak evidence: screen and status: the agent recorded the prompt, then put it back into "
    "its input box and went idle with no turn end (Esc before the answer began)"
)
#: seconds between two presses of Ctrl-C (Claude quits on a second one within 800 ms)
CTRL_C_GAP = 1.2


def _squashed(text: str) -> str:
    return "".join(text.split())


def _header(message: Message) -> str:
    """The start of this attempt's envelope, without whitespace (the box may wrap it)."""
    return f"[agentbridgemessage={message.id}attempt={message.attempt}"


def prompt_put_back(
    message: Message, accepted: bool, status: str | None, screen: ScreenState
) -> bool:
    """The agent took this attempt, is idle again and shows its prompt back in the input box.

    ``status`` is the agent's own idle/busy/waiting (None when the CLI publishes none: then the
    screen's READY must do). The box must *start* with this attempt's envelope: a draft that
    merely quotes it, or another message's prompt, does not count.
    """
    if not accepted or screen.kind != ScreenKind.READY or status not in (None, "idle"):
        return False
    squashed = _squashed(screen.input_text or "")
    header = _header(message)
    return squashed.startswith(header) and squashed[len(header) : len(header) + 1] in ("c", "]")


async def end_interrupted(
    ledger: LedgerStore, receipts: Receipts, session: Any, message: Message, evidence: str = ""
) -> None:
    """Record the interrupt (fenced: only the lease holder may), tell the sender, tidy the box."""
    try:
        if evidence:
            await ledger.note(message.id, session.owner, "interrupt_evidence", evidence)
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
    return f"agentbridgemessage={message.id}" in _squashed(box) or text_visible(
        box, sanitize_text(message.text)
    )


async def clear_restored_prompt(session: Any, message: Message, within: float = 1.0) -> bool:
    """Clear the prompt the CLI put back after Esc, only when it is ours. True when cleared."""
    injector = getattr(session, "injector", None)
    if injector is None:
        return False
    key = str(getattr(session.profile, "clear_input_key", "C-u"))
    deadline = time.monotonic() + within
    while True:
        try:
            box = await injector.read_box()
        except Exception:
            return False
        if box and _is_ours(box, message):
            if key == "C-u":
                cleared: bool = await injector.clear_box()
            else:
                cleared = await _clear_with(session, injector, key, message)
            log.info("message %s: cleared the interrupted prompt from the box", message.id)
            return cleared
        if time.monotonic() > deadline:
            return False  # nothing restored (or a human's draft): leave it alone
        await asyncio.sleep(0.05)


async def _clear_with(session: Any, injector: Any, key: str, message: Message) -> bool:
    """Press a whole-box clearing key (Ctrl-C) at most twice, ``CTRL_C_GAP`` apart, and only
    while the agent is not busy (there Ctrl-C would interrupt a turn) and the box is ours."""
    for _ in range(2):
        if session.agent_status() == "busy":
            return False
        await session.tmux.send_key(session.pane_id or "", key)
        pressed = time.monotonic()
        while time.monotonic() - pressed < CTRL_C_GAP:
            box = await injector.read_box()
            if box == "":
                return True
            await asyncio.sleep(0.05)
        box = await injector.read_box()
        if not box or not _is_ours(box, message):
            return bool(box == "")
    return False
