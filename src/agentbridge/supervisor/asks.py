"""The MCP ``ask`` tool: the agent's question goes to the chat, the chat's answer comes back.

``mcp-ask`` opens an ``asks`` row and queues the question in the outbox to the conversation of
the message in flight (with none: the agent's default conversation, ``[mcp] notify_channel`` /
``notify_conversation``, rate-limited like ``notify``). ``mcp-ask-wait`` is the tool's long
poll: it answers as soon as the row is settled, or after at most ``WAIT_MAX`` seconds still
pending (the tool asks again), so a supervisor restart costs the tool a reconnect, never the
answer: the answer is in the row.

How an answer is recognised (``intercept``, the one call in ``Supervisor._ingest_for``, and
``agentbridge send`` through the socket): while an ask is pending in a conversation, the
**next message** from that conversation (channels admit only their allowlisted senders) is
its answer — the oldest pending ask's, if several — and ``answer <id> <text>`` answers a
given one. Chat commands (``/stop``…) and permission answers (``yes abc12``) are taken before
it, so they still work while an ask waits; a message with files is a message, not an answer.
With ``choices``, an answer that is a choice's number or its text (any case) is that choice;
other text is passed on as given. The answer is committed to the ledger before the channel's
ingest returns and is never queued to the agent as a message. A redelivered answer (same
platform key) is recognised and dropped. When the time is up the row expires, the chat is
told and the tool returns "no answer within N s". Pending asks are this supervisor's: they
are loaded from the ledger on first use, so a restart keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from agentbridge.crashpoints import crash_point
from agentbridge.delivery.actions import ASK_KEY_PREFIX
from agentbridge.ledger.store import Ask, AskState, IngestResult, LedgerStore, NotFound
from agentbridge.models import Message
from agentbridge.sanitize import sanitize_text
from agentbridge.supervisor import fleet_asks
from agentbridge.supervisor.ask_text import not_a_row, question_text, resolve, span
from agentbridge.supervisor.commands import COMMAND_LANE, parse_command
from agentbridge.supervisor.control_mcp import mcp_settings
from agentbridge.supervisor.control_ops import BadRequest
from agentbridge.supervisor.permissions import ANSWER as PERMISSION_ANSWER

if TYPE_CHECKING:
    from agentbridge.config import Config
    from agentbridge.supervisor.control import Handler

log = logging.getLogger(__name__)

ANSWER = re.compile(r"\s*answer\s+([a-z0-9]{5})\b\s*(.*)", re.IGNORECASE | re.DOTALL)
WAIT_MAX = 10.0  #: one long poll (below the tool's 15 s socket read timeout)
MAX_TIMEOUT = 3600.0
MAX_CHOICES = 10
_MAX_QUESTION = 4000


class Supervisor(Protocol):
    """What the relay needs of ``supervisor.up.Supervisor`` (no import: up.py imports us)."""

    config: Config
    ledger: LedgerStore | None
    workers: Any
    ask_relay: AskRelay | None


class AskRelay:
    """Pending asks of one supervisor: which conversations wait, and the waiting tool calls."""

    def __init__(self, supervisor: Supervisor) -> None:
        assert supervisor.ledger is not None
        self.ledger: LedgerStore = supervisor.ledger
        self.config = supervisor.config
        self.workers = supervisor.workers
        self.supervisor = supervisor
        self._wrapped = False
        self._wake: dict[int, asyncio.Event] = {}
        #: (channel, conversation) → pending ask ids, oldest first; loaded on first use
        self._pending: dict[tuple[str, str], list[int]] | None = None
        self._answered_keys: set[tuple[str, str]] = set()
        self._sent: deque[float] = deque()

    # ------------------------------------------------------------------ the tool's requests

    def _wrap_send(self) -> None:
        """``agentbridge send`` writes through the socket's ``send``, not a channel's ingest:
        an answer typed there is taken the same way (commands and ``yes <id>`` still pass)."""
        control = getattr(self.supervisor, "control", None)
        if self._wrapped or control is None or "send" not in control.handlers:
            return
        self._wrapped = True
        send: Handler = control.handlers["send"]

        async def send_or_answer(request: dict[str, Any]) -> dict[str, Any]:
            fields = [request.get(k) for k in ("channel", "conversation", "sender", "text")]
            key = request.get("key")
            text = str(fields[3])
            plain = parse_command(text) is None and PERMISSION_ANSWER.fullmatch(text) is None
            if all(isinstance(f, str) for f in fields) and plain:
                channel, conversation, sender, text = (str(f) for f in fields)
                taken = await self.intercept(
                    channel, conversation, sender, text, key if isinstance(key, str) else None
                )
                if taken is not None:
                    return {"ok": True, "message": taken.message.to_json(), "created": False}
            return await send(request)

        control.handlers["send"] = send_or_answer

    def _in_flight(self, agent: str) -> Message | None:
        session = getattr(self.workers.get(agent), "session", None)
        return getattr(getattr(session, "current", None), "message", None)

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """``mcp-ask``: open (or, for a replayed turn, find) the ask and queue the question."""
        self._wrap_send()
        agent = str(request.get("agent"))
        if agent not in self.config.agents:
            raise BadRequest(f"no agent named {agent!r}")
        question = request.get("question")
        if not isinstance(question, str) or not question.strip():
            raise BadRequest("ask: the question is empty")
        question = sanitize_text(question)[:_MAX_QUESTION]
        choices = request.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise BadRequest("ask: choices must be a list of strings")
        choices = [" ".join(sanitize_text(c).split())[:100] for c in choices if c.strip()]
        if len(choices) > MAX_CHOICES:
            raise BadRequest(f"ask: at most {MAX_CHOICES} choices")
        timeout = request.get("timeout_s", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise BadRequest("ask: timeout_s must be a positive number of seconds")
        timeout = min(float(timeout), MAX_TIMEOUT)
        message = self._in_flight(agent)
        if message is not None:
            again = await self._asked_before(message, question, choices)
            if again is not None:
                return {"ask": again.to_json(), "reused": True}
            channel, conversation = message.channel, message.conversation
        else:
            settings = mcp_settings(self.config, agent)
            if not settings.notify_channel or not settings.notify_conversation:
                raise BadRequest(
                    f"agent {agent} has no message in flight and no default conversation: set"
                    " [mcp] notify_channel and notify_conversation to ask without one"
                )
            self._take_rate(settings.rate_per_minute)
            channel, conversation = settings.notify_channel, settings.notify_conversation
        await self._load()
        ask = await self.ledger.open_ask(
            agent,
            channel,
            conversation,
            question,
            choices,
            self.ledger.clock() + timeout,
            message_id=message.id if message else None,
            attempt=message.attempt if message else None,
        )
        self._track(ask)
        await self._say(ask, "question", question_text(ask, timeout), message)
        log.info("ask %s of %s: sent to %s:%s", ask.short_id, agent, channel, conversation)
        return {"ask": ask.to_json(), "reused": False}

    async def _asked_before(
        self, message: Message, question: str, choices: list[str]
    ) -> Ask | None:
        """The same question of the same message, still pending or answered in an earlier
        attempt (the turn was replayed after a restart: the answer given stands)."""
        for old in reversed(await self.ledger.list_asks(message_id=message.id, limit=50)):
            if (old.question, list(old.choices)) != (question, choices):
                continue
            if old.state == AskState.PENDING and old.expires_at > self.ledger.clock():
                return old
            if old.state == AskState.ANSWERED and (old.attempt or 0) < message.attempt:
                return old
        return None

    def _take_rate(self, limit: int) -> None:
        now = time.monotonic()
        while self._sent and self._sent[0] <= now - 60:
            self._sent.popleft()
        if len(self._sent) >= limit:
            raise BadRequest(f"rate limit: {limit} agent-initiated questions per minute")
        self._sent.append(now)

    async def wait(self, request: dict[str, Any]) -> dict[str, Any]:
        """``mcp-ask-wait``: the ask once settled, or still pending after ``wait`` seconds."""
        self._wrap_send()
        ask_id = request.get("id")
        if isinstance(ask_id, bool) or not isinstance(ask_id, int):
            raise BadRequest("ask-wait: id must be an ask id")
        try:
            ask = await self.ledger.get_ask(ask_id)
        except NotFound:
            raise BadRequest(f"ask-wait: no ask #{ask_id}") from None
        if ask.agent != request.get("agent"):
            raise BadRequest(f"ask-wait: ask #{ask_id} is not this agent's")
        wait = min(float(request.get("wait") or WAIT_MAX), WAIT_MAX)
        event = self._wake.setdefault(ask.id, asyncio.Event())
        deadline = time.monotonic() + wait
        while True:
            event.clear()  # before the read: a wake after it is not lost
            ask = await self.ledger.get_ask(ask.id)
            if ask.state != AskState.PENDING:
                break
            left = ask.expires_at - self.ledger.clock()
            if left <= 0:
                ask = await self._expire(ask)
                break
            step = fleet_asks.step(self.ledger, min(left, deadline - time.monotonic()))
            if step <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), step)
        if ask.state != AskState.PENDING:
            self._wake.pop(ask.id, None)
        return {"ask": ask.to_json()}

    async def _expire(self, ask: Ask) -> Ask:
        row, won = await self.ledger.answer_ask(ask.id, AskState.EXPIRED, "timeout")
        self._untrack(row)
        if won:
            within = span(round(row.expires_at - row.created_at, 1))
            log.info("ask %s of %s: no answer within %s", row.short_id, row.agent, within)
            note = f"Question {row.short_id} not answered within {within}: the agent goes on"
            await self._say(row, "timeout", note + " without it", None)
        return row

    # ------------------------------------------------------------------ the chat's answers

    async def _load(self) -> None:
        """Pending asks and recent answer keys from the ledger (a restart keeps both)."""
        if self._pending is not None:
            return
        self._pending = {}
        for ask in await self.ledger.list_asks(limit=500):
            if ask.state == AskState.PENDING:
                self._track(ask)
            elif ask.answer_key is not None:
                self._answered_keys.add((ask.channel, ask.answer_key))

    def _track(self, ask: Ask) -> None:
        if self._pending is not None:
            self._pending.setdefault((ask.channel, ask.conversation), []).append(ask.id)

    def _untrack(self, ask: Ask) -> None:
        ids = (self._pending or {}).get((ask.channel, ask.conversation), [])
        if ask.id in ids:
            ids.remove(ask.id)
        if ask.answer_key is not None:
            self._answered_keys.add((ask.channel, ask.answer_key))
        event = self._wake.get(ask.id)
        if event is not None:
            event.set()

    async def intercept(
        self, channel: str, conversation: str, sender: str, text: str, key: str | None
    ) -> IngestResult | None:
        """The answer to a pending ask of this conversation is taken here, never passed on."""
        await self._load()
        assert self._pending is not None
        if key is not None and (channel, key) in self._answered_keys:
            log.info("ask: a redelivered answer (%s %s) dropped", channel, key)
            return await self._result(None, channel, conversation, sender, text)
        explicit = ANSWER.fullmatch(text)
        if (fresh := await fleet_asks.pending_ids(self.ledger, channel, conversation)) is not None:
            self._pending[(channel, conversation)] = fresh  # a fleet: another node's agent asked
        ids = self._pending.get((channel, conversation), [])
        if explicit is not None and explicit.group(2).strip():
            short_id = explicit.group(1).lower()
            rows = await self.ledger.list_asks(channel=channel, conversation=conversation, limit=50)
            target = next((a for a in reversed(rows) if a.short_id == short_id), None)
            if target is not None:
                return await self._answer(target, sender, explicit.group(2), key, explicit=True)
        if not ids:
            return None  # no question waits here (an id of elsewhere is text for the agent)
        return await self._answer_oldest(ids, sender, text, key)

    async def _answer_oldest(
        self, ids: list[int], sender: str, text: str, key: str | None
    ) -> IngestResult | None:
        for ask_id in list(ids):
            ask = await self._settle_stale(await self.ledger.get_ask(ask_id))
            if ask.state != AskState.PENDING:
                self._untrack(ask)
                continue
            return await self._answer(ask, sender, text, key, explicit=False)
        return None

    async def _settle_stale(self, ask: Ask) -> Ask:
        """A pending ask nobody waits for any more: past its time, or its message's turn is
        over (the agent restarted and the replayed turn did not ask again). Its answer would
        reach no one, so the text goes to the agent as a message instead."""
        if ask.state != AskState.PENDING:
            return ask
        if ask.expires_at <= self.ledger.clock():
            return await self._expire(ask)
        if ask.message_id is None:
            return ask
        try:
            alive = (await self.ledger.get(ask.message_id)).in_flight
        except NotFound:
            alive = False
        if alive:
            return ask
        row, _ = await self.ledger.answer_ask(ask.id, AskState.EXPIRED, "turn-ended")
        self._untrack(row)
        log.info("ask %s of %s: closed, its turn ended", row.short_id, row.agent)
        return row

    async def _answer(
        self, ask: Ask, sender: str, text: str, key: str | None, *, explicit: bool
    ) -> IngestResult | None:
        answer = resolve(ask, text)
        if not answer:
            return None
        ask = await self._settle_stale(ask)
        row, won = await self.ledger.answer_ask(ask.id, AskState.ANSWERED, sender, answer, key)
        crash_point("after_ask_answer")  # committed, the waiting tool not yet woken
        self._untrack(row)
        if won:
            log.info("ask %s of %s: answered by %s", row.short_id, row.agent, sender)
            await self._say(row, "answer", f"Answer to {row.short_id} passed to {row.agent}", None)
        elif explicit:
            who = f"by {row.answered_by}" if row.state == AskState.ANSWERED else "(expired)"
            await self._say(
                row, f"late:{key or time.time()}", f"Question {row.short_id} is closed {who}", None
            )
        else:
            return None  # it closed just now: the text is an ordinary message after all
        return await self._result(row, row.channel, row.conversation, sender, text)

    async def _result(
        self, ask: Ask | None, channel: str, conversation: str, sender: str, text: str
    ) -> IngestResult:
        """What the channel's ingest returns: the asking message, or (an ask no message
        asked) a record with id 0 that is not a ledger row — the ask row is the record."""
        if ask is not None and ask.message_id is not None:
            try:
                return IngestResult(message=await self.ledger.get(ask.message_id), created=False)
            except NotFound:
                pass
        agent = ask.agent if ask is not None else ""
        message = not_a_row(channel, conversation, sender, text, agent, self.ledger.clock())
        return IngestResult(message=message, created=False)

    async def _say(self, ask: Ask, what: str, text: str, message: Message | None) -> None:
        await self.ledger.enqueue_reply(
            ask.channel,
            ask.conversation,
            text,
            key=f"{ASK_KEY_PREFIX}{ask.id}:{what}",
            message_id=ask.message_id,
            reply_to=message.platform_id if message is not None else None,
        )


def control_handlers(supervisor: Supervisor) -> dict[str, Handler]:
    """``mcp-ask`` and ``mcp-ask-wait``; makes the supervisor's relay (``ask_relay``)."""
    relay = supervisor.ask_relay = AskRelay(supervisor)

    def guarded(method: Handler) -> Handler:
        async def handle(request: dict[str, Any]) -> dict[str, Any]:
            try:
                return await method(request)
            except BadRequest as exc:  # an answer for the agent, not a crash
                return {"ok": False, "error": str(exc), "error_kind": "BadRequest"}

        return handle

    return {"mcp-ask": guarded(relay.ask), "mcp-ask-wait": guarded(relay.wait)}


async def intercept(
    supervisor: Supervisor,
    channel: str,
    conversation: str,
    sender: str,
    text: str,
    key: str | None = None,
    agent: str | None = None,
    attachments: Sequence[object] = (),
) -> IngestResult | None:
    """The one call in ``_ingest_for``: an answer is consumed, anything else is not (a chat
    command — routed to the command lane — and a message with files are never answers)."""
    relay = supervisor.ask_relay
    if relay is None or agent == COMMAND_LANE or attachments:
        return None
    return await relay.intercept(channel, conversation, sender, text, key)
