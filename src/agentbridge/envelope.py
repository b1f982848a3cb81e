"""The one-line header wrapped around every injected prompt, and its parser.

The header lets the bridge recognise its own prompts in the agent's transcript and hooks, so a
turn end can be matched to exactly one ledger row. Only the first line is ever parsed, so text
inside a message can never forge an envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Envelope", "format_envelope", "parse_envelope", "unwrap", "wrap"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@:+-]")
_VALUE = r"[A-Za-z0-9._@:+-]+"
_HEADER = re.compile(
    rf"\[agentbridge message=(?P<message>[0-9]+) attempt=(?P<attempt>[0-9]+)"
    rf" channel=(?P<channel>{_VALUE}) sender=(?P<sender>{_VALUE})"
    r"(?P<resent> resent-after-restart)?\]"
)
RESENT_FLAG = "resent-after-restart"
_HINT = re.compile(r"(?: \([^\n]*\))?")


def _field(value: str) -> str:
    """Restrict a field to the safe alphabet so a value can never break the header's syntax."""
    cleaned = _UNSAFE.sub("_", value)
    return cleaned or "_"


@dataclass(frozen=True)
class Envelope:
    """Identity of one injected attempt of one ledger message."""

    message_id: int
    attempt: int
    channel: str
    sender: str
    resent: bool = False


def format_envelope(env: Envelope) -> str:
    """The header line, no newline: ``[agentbridge message=42 attempt=1 channel=local …]``."""
    parts = [
        f"message={int(env.message_id)}",
        f"attempt={int(env.attempt)}",
        f"channel={_field(env.channel)}",
        f"sender={_field(env.sender)}",
    ]
    if env.resent:
        parts.append(RESENT_FLAG)
    return "[agentbridge " + " ".join(parts) + "]"


def wrap(env: Envelope, body: str, hint: str | None = None) -> str:
    """Header line (plus an optional ``(hint)`` after it), a newline, then the body.

    The hint tells the agent how to send extra replies; it never contains message text.
    """
    head = format_envelope(env)
    if hint:
        head += f" ({hint.replace(chr(10), ' ')})"
    return head + "\n" + body


def _first_line(prompt: str) -> tuple[str, str]:
    text = prompt.lstrip()
    head, sep, rest = text.partition("\n")
    return head.rstrip("\r \t"), rest if sep else ""


def parse_envelope(prompt: str) -> Envelope | None:
    """Parse the first line of ``prompt`` (leading whitespace ignored); anything else → None."""
    if not isinstance(prompt, str):
        return None
    head, _ = _first_line(prompt)
    m = _HEADER.match(head)
    if m is None or not _HINT.fullmatch(head[m.end() :]):
        return None
    return Envelope(
        message_id=int(m["message"]),
        attempt=int(m["attempt"]),
        channel=m["channel"],
        sender=m["sender"],
        resent=m["resent"] is not None,
    )


def unwrap(prompt: str) -> tuple[Envelope | None, str]:
    """Split a prompt into (envelope, body); without an envelope the body is the whole prompt."""
    env = parse_envelope(prompt)
    if env is None:
        return None, prompt
    _, body = _first_line(prompt)
    return env, body
