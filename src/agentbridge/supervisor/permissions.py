"""The permission relay: an agent's permission prompt goes to the chat, the chat's answer back.

The agent CLI's ``PermissionRequest`` hook (``agent.permission_hook``) asks over the control
socket (``permission``) and blocks. Here a ``permission_request`` row is opened for the message
in flight, a notice is queued in the outbox to that message's conversation, and the hook's
request waits for the first of: an answer ``yes|no|always <id>`` arriving through
``Supervisor._ingest_for`` from the same channel and conversation (``intercept``; channels
gate who may send there), or the timeout (``[permissions] timeout``), which denies and says so.
A turn the bridge did not inject (a human typing in the pane) has no conversation: the hook
gets no decision and the CLI's own prompt stays. Answers never reach the agent as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from agentbridge.agent.socket_pointer import write_pointer
from agentbridge.delivery.actions import PERMISSION_KEY_PREFIX, asked_during, choices_text
from agentbridge.ledger.store import (
    IngestResult,
    LedgerStore,
    PermissionRequest,
    PermissionState,
)
from agentbridge.models import Message
from agentbridge.sanitize import sanitize_text
from agentbridge.states import IN_FLIGHT

if TYPE_CHECKING:
    from agentbridge.config import Config


class Supervisor(Protocol):
    """What the relay needs of ``supervisor.up.Supervisor`` (no import: up.py imports us)."""

    config: Config
    ledger: LedgerStore | None
    permission_relay: PermissionRelay | None


log = logging.getLogger(__name__)

ANSWER = re.compile(r"\s*(yes|no|always)\s+([a-z0-9]{5})\s*", re.IGNORECASE)
SUMMARY_LIMIT = 160


def summarize(tool: str, tool_input: object) -> str:
    """A short, pasteable line for the command or the file a tool call touches."""
    text = ""
    if isinstance(tool_input, dict):
        for key in ("command", "cmd", "file_path", "path", "url", "pattern"):
            value = tool_input.get(key)
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            if isinstance(value, str) and value.strip():
                text = value
                break
        else:
            text = json.dumps(tool_input, ensure_ascii=False, sort_keys=True)
    elif tool_input is not None:
        text = str(tool_input)
    text = " ".join(sanitize_text(text).split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


@dataclass(frozen=True)
class Answered:
    """An answer the relay took: the asking message, the request as it now stands, and
    whether this answer decided it (False: it was answered before)."""

    message: Message
    request: PermissionRequest
    won: bool


class PermissionRelay:
    """Pending requests of one supervisor: their waiting hooks and the chat's answers."""

    def __init__(self, ledger: LedgerStore, config: Config) -> None:
        self.ledger = ledger
        self.config = config
        self._waiting: dict[str, asyncio.Future[tuple[PermissionState, bool]]] = {}
        self._swept = False

    async def _sweep(self) -> None:
        """Requests left pending by an earlier supervisor: their hooks are gone."""
        if self._swept:
            return
        self._swept = True
        for req in await self.ledger.list_permissions(state=PermissionState.PENDING):
            if req.short_id not in self._waiting:
                await self.ledger.answer_permission(
                    req.short_id, PermissionState.EXPIRED, "restart"
                )

    async def owner_of(self, agent: str) -> Message | None:
        """The message in flight on ``agent`` (the newest, if several)."""
        found: list[Message] = []
        for state in IN_FLIGHT:
            found += await self.ledger.list_messages(state=str(state), agent=agent, limit=10)
        return max(found, key=lambda m: m.id) if found else None

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``permission`` control command: blocks until the chat decides or time is up."""
        await self._sweep()
        agent = str(request.get("agent"))
        event = request.get("event") if isinstance(request.get("event"), dict) else {}
        assert isinstance(event, dict)
        if not self.config.permissions.enabled:
            return {"decision": None, "note": "permission relay disabled"}
        message = await self.owner_of(agent)
        if message is None:
            log.info("permission prompt of %s has no message in flight: left to the pane", agent)
            return {"decision": None, "note": "no message in flight"}
        tool = sanitize_text(str(event.get("tool_name") or "tool"))[:60]
        summary = summarize(tool, event.get("tool_input"))
        timeout = self.config.permissions.timeout
        can_always = bool(event.get("can_always"))
        req = await self.ledger.open_permission(
            message.id, agent, tool, summary, self.ledger.clock() + timeout, can_always=can_always
        )
        future: asyncio.Future[tuple[PermissionState, bool]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[req.short_id] = future
        options = choices_text(req.short_id, can_always)
        await self._say(
            message, f"{req.id}:ask", f"Permission needed: {tool} {summary} — reply {options}"
        )
        try:
            state, always = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            row, won = await self.ledger.answer_permission(
                req.short_id, PermissionState.EXPIRED, "timeout"
            )
            state, always = row.state, row.always
            if won:
                minutes = f"{timeout / 60:g} min" if timeout >= 60 else f"{timeout:g} s"
                log.info("permission %s of %s timed out: denied", req.short_id, agent)
                await self._say(
                    message,
                    f"{req.id}:timeout",
                    f"Permission {req.short_id} ({tool}) not answered within {minutes}: denied",
                )
        finally:
            self._waiting.pop(req.short_id, None)
        if state == PermissionState.ALLOWED:
            return {"decision": "allow", "always": always, "short_id": req.short_id}
        why = (
            "timed out in the chat" if state == PermissionState.EXPIRED else "denied from the chat"
        )
        return {"decision": "deny", "message": why, "short_id": req.short_id}

    async def intercept(
        self, channel: str, conversation: str, sender: str, text: str
    ) -> IngestResult | None:
        """An answer to a request of this conversation is taken here, never passed on."""
        answered = await self.answer(channel, conversation, sender, text)
        return None if answered is None else IngestResult(message=answered.message, created=False)

    async def answer(
        self, channel: str, conversation: str, sender: str, text: str
    ) -> Answered | None:
        """``intercept`` with what became of the request (for ``agentbridge send``'s line)."""
        match = ANSWER.fullmatch(text)
        if match is None:
            return None
        await self._sweep()
        word, short_id = match.group(1).lower(), match.group(2).lower()
        found = await asked_during(self.ledger, short_id)
        if found is None:
            return None
        message = found[1]
        if (message.channel, message.conversation) != (channel, conversation):
            return None  # not this conversation's to answer: plain text for the agent
        state = PermissionState.DENIED if word == "no" else PermissionState.ALLOWED
        row, won = await self.ledger.answer_permission(
            short_id, state, sender, always=word == "always"
        )
        if won:
            future = self._waiting.get(short_id)
            if future is not None and not future.done():
                future.set_result((row.state, row.always))
            scope = " for this session" if row.always else ""
            note = f"Permission {short_id}: {row.state}{scope} (by {sender})"
        else:
            note = f"Permission {short_id} already answered by {row.answered_by} ({row.state})"
        await self._say(message, f"{row.id}:answer:{sender}:{word}:{row.answered_at}", note)
        return Answered(message, row, won)

    async def _say(self, message: Message, key: str, text: str) -> None:
        await self.ledger.enqueue_reply(
            message.channel,
            message.conversation,
            text,
            key=f"{PERMISSION_KEY_PREFIX}{key}",
            message_id=message.id,
        )


def relay_for(supervisor: Supervisor) -> PermissionRelay:
    """The supervisor's relay (made on first use: up.py only calls in)."""
    relay = supervisor.permission_relay
    if relay is None:
        assert supervisor.ledger is not None
        relay = supervisor.permission_relay = PermissionRelay(supervisor.ledger, supervisor.config)
    return relay


def control_handler(supervisor: Supervisor, socket: str) -> Any:
    """The ``permission`` control command; writes where hooks find the socket (the bridge's
    pointer file, ``agent/socket_pointer.py``)."""
    with contextlib.suppress(OSError):
        write_pointer(supervisor.config.state_dir, socket)

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        return await relay_for(supervisor).handle(request)

    return handle


async def intercept(
    supervisor: Supervisor, channel: str, conversation: str, sender: str, text: str
) -> IngestResult | None:
    """The one call in ``_ingest_for``: a permission answer is consumed, anything else is not."""
    if ANSWER.fullmatch(text) is None:
        return None
    return await relay_for(supervisor).intercept(channel, conversation, sender, text)
