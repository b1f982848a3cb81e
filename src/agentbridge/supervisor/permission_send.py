"""Permission answers written with ``agentbridge send``: taken like the same text in the chat.

Through the control socket, ``wrap_send`` puts the relay in front of the ``send`` op: a
``yes|no|always <id>`` for a request of that channel and conversation is answered (first
answer wins, the chat gets the same notes) and never stored as a message for the agent. The
answer names the request, so the CLI can say what became of it. The web console answers the
same way, through ``channel_extras``.

With no supervisor running, no hook can be waiting: a hook asks the supervisor over the
socket and gives up when it goes away, and the next supervisor expires what was left pending.
So the local path (``control_ops._send`` on the CLI's own ledger) refuses such an answer with
``not_waiting``'s line instead of storing it — kept, it would reach the agent as plain text
or answer a request nothing waits for.
"""

from __future__ import annotations

import logging
from typing import Any

from agentbridge.delivery.actions import asked_during
from agentbridge.ledger.store import LedgerStore, PermissionState
from agentbridge.supervisor.control import Handler
from agentbridge.supervisor.permissions import ANSWER, Answered, Supervisor, relay_for

log = logging.getLogger(__name__)

#: the ``ChannelContext.extras`` key of the relay's answer: a channel that may answer any
#: conversation's request (the web console) calls it; chat channels ingest the text instead
ANSWERER = "permission_answer"


def channel_extras(supervisor: Supervisor) -> dict[str, Any]:
    """What ``Supervisor._start_channel`` puts in every ``ChannelContext.extras``."""

    async def answer(channel: str, conversation: str, sender: str, text: str) -> Answered | None:
        return await relay_for(supervisor).answer(channel, conversation, sender, text)

    return {ANSWERER: answer}


def wrap_send(supervisor: Supervisor, handlers: dict[str, Handler]) -> None:
    """Let the relay see ``send`` requests first (``Supervisor.startup`` calls this once)."""
    send = handlers.get("send")
    if send is None:
        return

    async def send_or_answer(request: dict[str, Any]) -> dict[str, Any]:
        fields = [request.get(k) for k in ("channel", "conversation", "sender", "text")]
        if all(isinstance(f, str) for f in fields) and ANSWER.fullmatch(str(fields[3])):
            channel, conversation, sender, text = (str(f) for f in fields)
            answered = await relay_for(supervisor).answer(channel, conversation, sender, text)
            ledger = supervisor.ledger
            if answered is None and ledger is not None:  # the CLI prints why, exits non-zero
                refusal = await asked_elsewhere(ledger, channel, conversation, text)
                if refusal is not None:
                    raise ValueError(refusal)
            if answered is not None:
                log.info("control: send for the CLI answered permission %s", text.split()[1])
                return {
                    "ok": True,
                    "message": answered.message.to_json(),
                    "created": False,
                    "permission": {**answered.request.to_json(), "won": answered.won},
                }
        return await send(request)

    handlers["send"] = send_or_answer


async def not_waiting(
    ledger: LedgerStore, channel: str, conversation: str, text: str
) -> str | None:
    """Why an answer sent with no supervisor is refused; None if ``text`` answers nothing here."""
    match = ANSWER.fullmatch(text)
    if match is None:
        return None
    short_id = match.group(2).lower()
    found = await asked_during(ledger, short_id)
    if found is None:
        return None
    req, message = found
    if (message.channel, message.conversation) != (channel, conversation):
        return await asked_elsewhere(ledger, channel, conversation, text)
    if req.state != PermissionState.PENDING:
        return f"permission {short_id} was already answered by {req.answered_by} ({req.state})"
    return (
        f"no supervisor is running, so nothing waits for permission {short_id} any more"
        " (a CLI prompt still open is in the agent's pane); not sent"
    )


async def asked_elsewhere(
    ledger: LedgerStore, channel: str, conversation: str, text: str
) -> str | None:
    """Why ``agentbridge send`` refuses an answer to another conversation's request.

    In a chat such text is plain text (the sender sees only their own requests). From the
    CLI it is the owner answering with the wrong ``--channel``/``--conversation``: stored, it
    would reach the agent as a prompt and answer nothing, so say where to answer instead.
    """
    match = ANSWER.fullmatch(text)
    if match is None:
        return None
    short_id = match.group(2).lower()
    found = await asked_during(ledger, short_id)
    if found is None:
        return None
    req, message = found
    if (message.channel, message.conversation) == (channel, conversation):
        return None
    return (
        f"permission {short_id} ({req.state}) was asked in {message.channel}:"
        f"{message.conversation}, not {channel}:{conversation}; answer it with --channel"
        f" {message.channel} --conversation {message.conversation}; not sent"
    )


def answer_line(permission: dict[str, Any], sender: str) -> str:
    """What ``agentbridge send`` prints for an answer the relay took."""
    short_id, state = permission.get("short_id"), permission.get("state")
    if permission.get("won"):
        scope = " for this session" if permission.get("always") else ""
        return f"permission {short_id}: {state}{scope} (by {sender})"
    return f"permission {short_id} already answered by {permission.get('answered_by')} ({state})"
