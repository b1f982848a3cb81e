"""Weaker evidence for CLIs with no transcript and no hooks (the ``generic`` runtime).

All such a program offers is its screen: its prompt line (the ``ready_pattern``) is "ready", the
text after that prompt is the input line, and a turn has ended when the prompt is back and the
screen has stopped changing. Every transition made this way says so in the audit trail.

Such a pane may not turn bracketed paste on, and then a pasted newline is an Enter: multi-line
text is never pasted there. The prompt is one line; a multi-line or long body goes to a 0600
file under the program's cwd (``inbox.py``) it is pointed at, deleted when the turn ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from agentbridge.agent import attachments, inbox
from agentbridge.agent.injector import InjectionOutcome, Injector, InjectorConfig
from agentbridge.agent.tmux import TmuxServer
from agentbridge.agent.turn import InFlight, TurnOutcome, paste_limit
from agentbridge.config import InjectionConfig
from agentbridge.envelope import format_envelope
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.store import LedgerStore
from agentbridge.plugin.protocols import LaunchSpec, RuntimeProfile, ScreenKind
from agentbridge.sanitize import sanitize_text


class AgentSession(Protocol):
    """What a screen-only turn needs of the session host (``agent_host.AgentSession``)."""

    profile: RuntimeProfile
    injection: InjectionConfig
    spec: LaunchSpec | None
    pane_id: str | None
    tmux: TmuxServer
    ledger: LedgerStore
    owner: str
    last_progress: float

    def alive(self) -> bool: ...
    def receipt(self, flight: InFlight, status: ReceiptKind) -> None: ...
    async def release(self, flight: InFlight, why: str) -> None: ...
    async def ledger_call(self, call: Any) -> Any: ...


log = logging.getLogger(__name__)

POLL = 0.2  #: screen poll period while a weak turn runs
WEAK = "weak evidence: screen"


def last_line(screen: str) -> str:
    """The last non-blank line of a capture (the prompt line when the program is ready)."""
    lines = [line.rstrip() for line in screen.split("\n") if line.strip()]
    return lines[-1] if lines else ""


def input_reader(prompt: str) -> Callable[[str], str | None]:
    """Read the input line: what follows the prompt recorded when the program was ready
    (joined across the screen rows a long line wraps onto)."""
    prefix = prompt.rstrip()

    def read(screen: str) -> str | None:
        lines = [line.rstrip() for line in screen.rstrip("\n").split("\n")]
        starts = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        if not starts:
            return None
        joined = "".join(lines[starts[-1] :])
        return joined[len(prefix) :].strip()

    return read


def single_line_prompt(session: AgentSession, flight: InFlight) -> str:
    """Envelope and body on one line; a body with a newline (or a long one) goes to the same
    0600 inbox file under the agent's cwd as a long message of any runtime."""

    message = flight.message
    body = sanitize_text(message.text)
    if session.spec is not None:
        body = attachments.with_references(message, session.spec.cwd, body)
    limit = min(paste_limit(session.profile, session.injection), 2000)
    if session.spec is not None and ("\n" in body or len(body) > limit):
        path = inbox.write(session.spec.cwd, message.id, body)
        body = f"(the message is in the file {path}; read it)"
    return f"{format_envelope(flight.envelope)} {body}"


def reply_from(screen: str, marker: str, sent: str) -> str:
    """The program's output after our input line (which may wrap over several rows), without
    the final prompt line."""
    lines = screen.rstrip("\n").split("\n")
    start = max((i for i, line in enumerate(lines) if marker in line), default=-1)
    if start >= 0:
        covered = len(lines[start]) - lines[start].index(marker)
        start += 1
        while start < len(lines) and covered < len(sent):  # rows our wrapped input filled
            covered += len(lines[start])
            start += 1
    body = lines[start:] if start >= 0 else lines
    while body and not body[-1].strip():
        body.pop()
    if body:
        body = body[:-1]  # the prompt that came back
    return "\n".join(line.rstrip() for line in body).strip()


async def run_weak_turn(session: AgentSession, flight: InFlight) -> None:
    """Paste one line, press Enter, then wait for the prompt to come back and settle."""

    assert session.pane_id is not None
    message = flight.message
    screen = await session.tmux.capture(session.pane_id)
    if session.profile.screen_state(screen, session.spec).kind != ScreenKind.READY:
        await session.release(flight, "the program is not at its prompt")
        return
    injector = Injector(
        session.tmux,
        session.pane_id,
        input_box=input_reader(last_line(screen)),
        config=InjectorConfig(settle=0.05, verify_timeout=session.injection.verify_timeout),
        escapes=False,
    )
    sent = single_line_prompt(session, flight)
    result = await injector.inject(sent, None)
    flight.injection = result
    if result.outcome != InjectionOutcome.SUBMITTED_UNVERIFIED:
        if result.outcome in (InjectionOutcome.PASTE_NOT_VISIBLE, InjectionOutcome.NOT_SUBMITTED):
            await session.tmux.send_key(session.pane_id, "C-u")  # our own text: clear it
        await session.release(flight, f"injection {result.outcome}")
        return
    owner = session.owner
    await session.ledger_call(session.ledger.mark_submitted(message.id, message.fence, owner))
    await session.ledger_call(
        session.ledger.mark_accepted(
            message.id, message.fence, owner, detail=f"{WEAK}: the text left the input line"
        )
    )
    session.receipt(flight, ReceiptKind.INJECTED)
    session.receipt(flight, ReceiptKind.WORKING)
    marker = f"[agentbridge message={message.id} "
    previous = ""
    while flight.outcome is None:
        await asyncio.sleep(POLL)
        if not session.alive():
            flight.finish(TurnOutcome.SESSION_ENDED, "the program exited")
            return
        text = await session.tmux.capture(session.pane_id, history=2000)
        if text != previous:
            session.last_progress = time.monotonic()
            previous = text
            continue
        state = session.profile.screen_state(text, session.spec)
        if state.kind == ScreenKind.READY and marker in text:
            reply = reply_from(text, marker, sent)
            done = await session.ledger_call(
                session.ledger.complete(
                    message.id,
                    message.fence,
                    reply,
                    owner,
                    detail=f"{WEAK}: the ready pattern is back and the screen settled",
                )
            )
            if done is not None:
                flight.finish(TurnOutcome.COMPLETED)
            return
