"""Progress while a turn runs: a throttled "working…" status to the sender, edited in place.

The agent's own evidence (``agent/evidence.py`` hands every event of the flight to
``ProgressReporter.event``) says the turn moves: assistant text, tool calls (``PROGRESS``
events). For a channel with ``progress`` on (``[channels.NAME] progress = true``; on by default
for the web console only) the first event posts a status message and later ones edit it, at
most once per ``progress_interval`` seconds (5 by default): an update that comes sooner waits
for the interval and carries the newest state. The turn's end (completion, interrupt, API
error) stops it at once; the final reply is the outbox's, untouched by this.

Only channels that can edit (``plugin.protocols.EditingChannel``) get progress: a new chat
message every few seconds would bury the conversation, so a channel without edits gets none
(the first turn there logs that). Best effort by design: an update is sent once, not written
ahead, never retried; a failure costs that update only and never touches the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentbridge.config import Config
from agentbridge.events import AgentEvent, AgentEventKind
from agentbridge.models import Message
from agentbridge.plugin.protocols import Channel, EditingChannel
from agentbridge.sanitize import sanitize_text

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
DEFAULT_ON = frozenset({"web"})  #: channels with progress unless their table says otherwise
SNIPPET = 120  #: characters of the agent's latest text shown
_SEND_TIMEOUT = 10.0
_STALE = 3600.0  #: a turn not heard of for this long is forgotten (its session died)
_ENDS = (AgentEventKind.TURN_COMPLETED, AgentEventKind.TURN_ABORTED, AgentEventKind.API_ERROR)
_MOVES = (AgentEventKind.ASSISTANT_TEXT, AgentEventKind.PROGRESS)


@dataclass(frozen=True)
class ProgressSettings:
    """``progress`` / ``progress_interval`` of one channel."""

    enabled: bool
    interval: float


def progress_settings(config: Config, channel: str) -> ProgressSettings:
    """The channel's settings (``config.progress``: validated, taken out of its table)."""
    table = config.progress.get(channel, {})
    return ProgressSettings(
        enabled=bool(table.get("progress", channel in DEFAULT_ON)),
        interval=float(table.get("progress_interval", DEFAULT_INTERVAL)),
    )


@dataclass
class _Turn:
    """One message's progress: what to say next and when it may be said."""

    message: Message
    channel: EditingChannel
    interval: float
    started: float = field(default_factory=time.monotonic)
    heard: float = field(default_factory=time.monotonic)
    steps: int = 0
    latest: str = ""
    status_id: str | None = None
    sent_at: float | None = None
    dirty: bool = False
    ended: bool = False
    task: asyncio.Task[None] | None = None

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        head = f"working ({elapsed:.0f} s, {self.steps} step{'s' if self.steps != 1 else ''})"
        return f"{head}: {self.latest}" if self.latest else f"{head}…"


class ProgressReporter:
    """Progress of one agent's turns (a ``dispatcher.AgentWorker`` holds one)."""

    def __init__(self, config: Config, channels: Mapping[str, Channel]) -> None:
        self.config = config
        self.channels = channels
        self._turns: dict[int, _Turn] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._off: set[str] = set()  #: channels that get no progress

    def event(self, message: Message, event: AgentEvent) -> None:
        """One event of the flight (``EvidenceMixin.on_event``); never raises, never waits."""
        try:
            self._event(message, event)
        except Exception:  # progress must never cost the message anything
            log.exception("progress of message %s failed", message.id)

    def _event(self, message: Message, event: AgentEvent) -> None:
        if event.kind in _ENDS:
            self.end(message.id)
            return
        if event.kind not in _MOVES:
            return
        turn = self._turns.get(message.id)
        if turn is None:
            turn = self._begin(message)
            if turn is None:
                return
        turn.heard = time.monotonic()
        turn.steps += 1
        text = " ".join(sanitize_text(event.text).split())
        if text:
            turn.latest = text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"
        turn.dirty = True
        if turn.task is None or turn.task.done():
            turn.task = asyncio.get_running_loop().create_task(self._flush(turn))
            self._tasks.add(turn.task)
            turn.task.add_done_callback(self._tasks.discard)

    def _begin(self, message: Message) -> _Turn | None:
        if message.channel in self._off:
            return None
        settings = progress_settings(self.config, message.channel)
        channel = self.channels.get(message.channel)
        if not settings.enabled or not isinstance(channel, EditingChannel):
            self._off.add(message.channel)  # decided once per channel: events are many
            if settings.enabled and channel is not None:
                log.warning(
                    "channel %s: progress is on, but it cannot edit messages: none sent",
                    message.channel,
                )
            return None
        now = time.monotonic()
        for old in [t for t in self._turns.values() if now - t.heard > _STALE]:
            self.end(old.message.id)
        turn = self._turns[message.id] = _Turn(message, channel, settings.interval)
        return turn

    def end(self, message_id: int) -> None:
        """The turn ended: no update after this (one already on its way may still land)."""
        turn = self._turns.pop(message_id, None)
        if turn is not None:
            turn.ended = True  # a waiting flush wakes to this and sends nothing

    async def _flush(self, turn: _Turn) -> None:
        """Send the newest state whenever the interval allows, while there is news."""
        while turn.dirty and not turn.ended:
            if turn.sent_at is not None:
                wait = turn.sent_at + turn.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    if turn.ended:
                        return
            turn.dirty = False
            turn.sent_at = time.monotonic()
            try:
                turn.status_id = await asyncio.wait_for(
                    turn.channel.edit_message(turn.message, turn.text(), turn.status_id),
                    _SEND_TIMEOUT,
                )
            except Exception as exc:  # best effort: this update is lost, the next may land
                log.info("progress of message %s not shown: %s", turn.message.id, exc)
