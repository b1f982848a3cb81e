"""The message in flight in one agent session, how its turn ended, and the prompt pasted for it.

Shared by the session host (transcript and hook evidence) and the screen-only turn runner, so
neither has to import the other.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from pathlib import Path

from agentbridge.agent import attachments, inbox
from agentbridge.agent.injector import InjectionResult
from agentbridge.config import InjectionConfig
from agentbridge.envelope import Envelope, wrap
from agentbridge.models import Message
from agentbridge.plugin.protocols import RuntimeProfile, ScreenKind
from agentbridge.sanitize import sanitize_text

#: a third-party profile without ``paste_limit``: the smaller of the two measured CLIs' limits
DEFAULT_PASTE_LIMIT = 1_000_000


class TurnOutcome(enum.StrEnum):
    """How the turn of the message in flight ended, as far as this session knows."""

    COMPLETED = "completed"
    API_ERROR = "api_error"
    ABORTED = "aborted"
    NOT_DELIVERED = "not_delivered"  # released: nothing reached the agent
    SESSION_ENDED = "session_ended"  # the agent died or was stopped: a victim


@dataclass
class InFlight:
    """The one message this session is working on."""

    message: Message
    envelope: Envelope
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: TurnOutcome | None = None
    detail: str = ""
    injection: InjectionResult | None = None

    screen: ScreenKind | None = None
    reset_at: str | None = None
    receipts: set[str] = field(default_factory=set)

    def finish(self, outcome: TurnOutcome, detail: str = "") -> None:
        """First finisher wins; later evidence is ignored."""
        if self.outcome is None:
            self.outcome, self.detail = outcome, detail
            self.done.set()

    def finish_from_screen(self, kind: ScreenKind, reset_at: str | None, detail: str) -> None:
        """A confirmed fault screen ended the turn (the transcript may say nothing)."""
        if self.screen is None:
            self.screen, self.reset_at = kind, reset_at
        self.finish(TurnOutcome.API_ERROR, detail or str(kind))


def paste_limit(profile: RuntimeProfile, injection: InjectionConfig) -> int:
    """The longest body pasted whole: the config's override, else the profile's measured one."""
    if injection.spill_threshold is not None:
        return injection.spill_threshold
    return int(getattr(profile, "paste_limit", DEFAULT_PASTE_LIMIT))


def build_prompt(
    message: Message, cwd: Path, limit: int, reply_command: str | None = None
) -> tuple[str, Envelope]:
    """The envelope header plus the sanitized body, pasted whole up to ``limit`` characters;
    a longer body goes to a 0600 file under the agent's cwd and the prompt points to it."""
    envelope = Envelope(
        message_id=message.id,
        attempt=message.attempt,
        channel=message.channel,
        sender=message.sender,
        resent=message.attempt > 1,
    )
    body = attachments.with_references(message, cwd, sanitize_text(message.text))
    if len(body) > limit:
        inbox.write(cwd, message.id, body)
        body = inbox.pointer(message.id, len(body))
    hint = f'extra replies: {reply_command} reply {message.id} "TEXT"' if reply_command else None
    return wrap(envelope, body, hint), envelope
