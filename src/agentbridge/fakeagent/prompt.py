"""What the fake agent makes of a prompt: its fault directives and its echo reply."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

MAX_REPLY = 2000
SHORT_REPLY = 200

_ENVELOPE = re.compile(
    r"^\[agentbridge message=[A-Za-z0-9._@:+-]+(?: [^\]\n]*)?\](?: \([^\n]*\))?\s*$"
)
_DIRECTIVE = re.compile(
    r"#fake:(crash|hang|ratelimit|contextfull|apierror|permission|rewind|tool|slow=(\d+(?:\.\d+)?))"
    r"(?:@(\d+))?"
)
_SWALLOW = re.compile(r"#fake:swallow=(\d+)")
_STEPS = re.compile(r"#fake:steps=(\d+)")
_ATTEMPT = re.compile(r"^\[agentbridge message=\S+ attempt=(\d+)")

API_ERRORS = ("ratelimit", "contextfull", "apierror")


@dataclass
class Faults:
    """Fault directives found in one prompt."""

    crash: bool = False
    hang: bool = False
    permission: bool = False
    #: a tool call that needs permission: ``PermissionRequest`` hooks decide (``permission.py``)
    tool: bool = False
    slow: float | None = None
    api_error: str | None = None  # one of API_ERRORS
    #: Esc writes nothing, as Claude Code 2.1.197 before the answer's first token
    rewind: bool = False

    def merge(self, other: Faults) -> Faults:
        """Combine two sets of directives (prompt + FAKE_AGENT_FAULT)."""
        return Faults(
            crash=self.crash or other.crash,
            hang=self.hang or other.hang,
            permission=self.permission or other.permission,
            tool=self.tool or other.tool,
            slow=self.slow if self.slow is not None else other.slow,
            api_error=self.api_error or other.api_error,
            rewind=self.rewind or other.rewind,
        )


def prompt_attempt(text: str) -> int | None:
    """The attempt number of the envelope on the first line, if any."""
    match = _ATTEMPT.match(text)
    return int(match.group(1)) if match else None


def parse_faults(text: str) -> Faults:
    """Find every ``#fake:...`` directive anywhere in ``text``.

    ``#fake:crash@1`` applies only to attempt 1 of a bridge message (the envelope's attempt),
    so a test can make the first attempt fail and watch the replay succeed.
    """
    faults = Faults()
    attempt = prompt_attempt(text)
    for match in _DIRECTIVE.finditer(text):
        name, seconds, only = match.group(1), match.group(2), match.group(3)
        if only is not None and attempt is not None and int(only) != attempt:
            continue
        if seconds is not None:
            faults.slow = float(seconds)
        elif name == "crash":
            faults.crash = True
        elif name == "hang":
            faults.hang = True
        elif name == "permission":
            faults.permission = True
        elif name == "rewind":
            faults.rewind = True
        elif name == "tool":
            faults.tool = True
        elif faults.api_error is None:
            faults.api_error = name
    return faults


def swallowed_enters(box_text: str) -> int:
    """``#fake:swallow=N`` in the input box: its first N Enters are lost (a test's way to make
    the rare swallowed Enter happen on demand; the injector must press Enter again)."""
    match = _SWALLOW.search(box_text)
    return int(match.group(1)) if match else 0


def progress_steps(text: str) -> int:
    """``#fake:steps=N``: a slow turn writes N assistant lines ("step 1/N"…) evenly spaced
    before its answer, as a real agent narrates its work (progress for the bridge to show)."""
    match = _STEPS.search(text)
    return int(match.group(1)) if match else 0


def env_faults(value: str | None) -> Faults:
    """Faults from ``FAKE_AGENT_FAULT`` (``crash``, ``slow=2``, ``#fake:hang``, comma lists)."""
    if not value:
        return Faults()
    parts = [p.strip().removeprefix("#fake:") for p in value.split(",")]
    return parse_faults(" ".join(f"#fake:{p}" for p in parts if p))


def has_envelope(prompt: str) -> bool:
    """True if the first line is an agentbridge envelope header."""
    return bool(_ENVELOPE.match(prompt.split("\n", 1)[0]))


def reply_text(prompt: str) -> str:
    """``echo: <text>``: the prompt after its envelope line, shortened when huge."""
    text = prompt.split("\n", 1)[1] if has_envelope(prompt) and "\n" in prompt else prompt
    if has_envelope(prompt) and "\n" not in prompt:
        text = ""
    if len(text) > MAX_REPLY:
        text = f"{text[:SHORT_REPLY]} … ({len(text)} chars)"
    return f"echo: {text}"


_API_ERRORS = {
    "ratelimit": ("rate_limit", "You've hit your limit · resets {reset}"),
    "contextfull": ("invalid_request", "Context limit reached · /compact or /clear to continue"),
    "apierror": ("server_error", "API Error: 500 Internal server error"),
}


def reset_text() -> str:
    """The rate-limit reset shown on screen (``FAKE_AGENT_RESET``, default 3:45pm UTC)."""
    value = os.environ.get("FAKE_AGENT_RESET", "3:45pm")
    return value if "(" in value else f"{value} (UTC)"


def api_error(name: str) -> tuple[str, str]:
    """(error kind for the transcript/StopFailure, the text on screen) for an API-error fault."""
    error, template = _API_ERRORS[name]
    return error, template.format(reset=reset_text())
