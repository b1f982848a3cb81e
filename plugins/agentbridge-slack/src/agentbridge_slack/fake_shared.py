"""What both halves of the fake Slack share (``testing.FakeSlack`` and its mixin
``fake_extras.FakeExtras``): the test tokens and ids, and the ``Envelope`` record. Its own
module so neither half imports the other for them (no import circle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["APP_TOKEN", "BOT_ID", "BOT_TOKEN", "BOT_USER", "SIGNING_SECRET", "TEAM", "Envelope"]

BOT_TOKEN = "xoxb-test-1-secret"
APP_TOKEN = "xapp-test-1-secret"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"


@dataclass
class Envelope:
    """One envelope (``events_api``, ``interactive``, ``slash_commands``) as sent, and what
    became of it."""

    envelope_id: str
    payload: dict[str, Any]
    type: str = "events_api"
    retry_attempt: int = 0
    sent_times: list[float] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)  # Events API: HTTP 200 answers
    statuses: list[int] = field(default_factory=list)  # Events API: every HTTP answer
