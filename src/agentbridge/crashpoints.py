"""Named points where a test can make the supervisor die as if SIGKILLed.

``AGENTBRIDGE_CRASH_AT=after_claim`` (for example) kills the process the first time it passes
that point. This is how the fault tests prove that a kill at *every* boundary loses nothing;
unset (always, in real use) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "after_ingest",  # a channel's ingest committed, before anything else
    "after_claim",  # the message is leased, nothing pasted yet
    "after_paste",  # the text is in the input box, Enter not pressed
    "after_enter",  # Enter pressed, acceptance not yet seen
    "after_accept",  # the agent's record shows the prompt
    "before_complete",  # the turn ended in the transcript, completion not yet recorded
    "after_outbox_row",  # completion + reply row committed, nothing sent
    "during_send",  # the send attempt is reserved (sending), the platform not yet answered
    "after_control_write",  # a CLI write committed by the supervisor, its answer not yet sent
    "before_command",  # a chat command is claimed from its lane, not yet handled
    "after_ask_answer",  # the answer to an MCP ask committed, the waiting tool not yet woken
    "migrate_batch",  # `ledger migrate` committed a batch of rows into PostgreSQL
)


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) when ``AGENTBRIDGE_CRASH_AT`` names this point."""
    if os.environ.get("AGENTBRIDGE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
