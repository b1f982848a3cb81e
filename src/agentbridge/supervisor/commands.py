"""Chat commands: the one parser every channel's text goes through (``/stop``, ``/status``…).

A message is a command when its whole text (surrounding whitespace aside) is one line of the
form ``/word`` or ``/word args``, and either ``word`` is one of :data:`COMMANDS` (any case;
Telegram's ``/word@botname`` too) or ``word`` stands alone. So ``/stop``, ``/retry 12`` and
``/Status`` are commands, a lone ``/frobnicate`` gets the help reply, while ``/usr/bin is
broken``, ``/tmp is full`` and any text of several lines go to the agent as usual: when in
doubt, the agent gets it.

A command is stored like any message (the ingress ack is the same commit), but in the
*command lane*: the agent name :data:`COMMAND_LANE`, which no agent worker claims; the
supervisor's command center claims it there, runs it and completes it with its answer as the
reply (so the answer goes out through the outbox). ``meta["for_agent"]`` is the agent the
conversation routes to. Kept light (no supervisor imports): ``agentbridge send`` uses it too.

``/use NAME`` records a per-conversation choice of agent in :class:`AgentChoices` (a JSON file
in the state dir, replaced atomically): :func:`route_choice` applies it to every later message
of that conversation without an ``@mention``, as long as the routes still let it reach NAME.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentbridge.config import Config
from agentbridge.supervisor.routing import Decision, Unroutable, route_for

log = logging.getLogger(__name__)

#: the agent name of stored commands: no agent worker claims it
COMMAND_LANE = "@commands"
#: every command the core knows, with its one-line help
COMMANDS: dict[str, str] = {
    "stop": "/stop: interrupt the agent's current turn (Esc)",
    "status": "/status: the agent's state, queue and in-flight message",
    "new": "/new: start a fresh agent session (asks you to confirm)",
    "retry": "/retry ID: try a queued, failed, interrupted or quarantined message again",
    "cancel": "/cancel ID: drop a queued, interrupted or quarantined message",
    "agents": "/agents: the agents this conversation can reach",
    "use": "/use NAME: send this conversation's messages to agent NAME (/use reset undoes it)",
    "help": "/help: this list",
}
#: what an unknown ``/word`` is handled as
UNKNOWN = "unknown"

_LEAD = re.compile(r"\s*/[A-Za-z]")
_COMMAND = re.compile(r"/([A-Za-z][A-Za-z0-9_]*)(?:@[A-Za-z0-9_]+)?(?:[ \t]+(.*))?")


@dataclass(frozen=True)
class Command:
    """One parsed command: its name (lower case, or ``unknown``), what was typed, the args."""

    name: str
    word: str
    args: str = ""


def parse_command(text: str) -> Command | None:
    """The command ``text`` is, or None when it is an ordinary message (see the module doc)."""
    if _LEAD.match(text) is None:  # the hot path: one anchored match, no copy
        return None
    stripped = text.strip()
    if "\n" in stripped:
        return None
    match = _COMMAND.fullmatch(stripped)
    if match is None:
        return None
    word, args = match.group(1), (match.group(2) or "").strip()
    name = word.lower()
    if name in COMMANDS:
        return Command(name, word, args)
    return Command(UNKNOWN, word) if not args else None


def command_lane(text: str, agent: str) -> dict[str, Any]:
    """``agent``/``meta`` keywords for the ledger's ingest: the lane when ``text`` is a command."""
    command = parse_command(text)
    if command is None:
        return {"agent": agent}
    return {"agent": COMMAND_LANE, "meta": {"command": command.name, "for_agent": agent}}


def help_text(first: str = "") -> str:
    """The reply listing every command (after ``first``, e.g. "unknown command /x")."""
    lines = [first] if first else []
    lines.append("Commands:")
    lines.extend(COMMANDS.values())
    return "\n".join(lines)


# --------------------------------------------------------------------------- /use choices


def choices_path(config: Config) -> Path:
    """Where the per-conversation agent choices live."""
    return config.state_dir / "agent-choices.json"


class AgentChoices:
    """``(channel, conversation) → agent`` chosen with ``/use``; durable across restarts.

    Only the supervisor writes it (one writer); ``agentbridge send`` reads it. Each change is
    written to a temporary file, fsynced and renamed over the old one, so a crash leaves the
    old or the new choices, never a torn file.
    """

    def __init__(self, path: Path, choices: dict[str, str] | None = None) -> None:
        self.path = path
        self._choices = choices or {}

    @classmethod
    def load(cls, path: Path) -> AgentChoices:
        """Read the file (missing or unreadable: no choices, and a warning for the latter)."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            log.warning("agent choices in %s unreadable, ignored: %s", path, exc)
            return cls(path)
        data = raw if isinstance(raw, dict) else {}
        return cls(path, {str(k): str(v) for k, v in data.items() if isinstance(v, str)})

    @staticmethod
    def _key(channel: str, conversation: str) -> str:
        return json.dumps([channel, conversation])

    def __bool__(self) -> bool:
        return bool(self._choices)

    def get(self, channel: str, conversation: str) -> str | None:
        """The agent chosen for this conversation, if any."""
        return self._choices.get(self._key(channel, conversation)) if self._choices else None

    def set(self, channel: str, conversation: str, agent: str | None) -> None:
        """Record (or, with None, forget) a choice, durably, before returning."""
        key = self._key(channel, conversation)
        choices = dict(self._choices)
        if agent is None:
            choices.pop(key, None)
        else:
            choices[key] = agent
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".agent-choices.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(choices, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a power cut
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._choices = choices


def reachable(config: Config, channel: str, conversation: str, sender: str, agent: str) -> bool:
    """May a message of this conversation and sender reach ``agent`` (by an @mention)?"""
    try:
        decision = route_for(config, channel, conversation, sender, f"@{agent} ?")
    except Unroutable:
        return False
    return decision.agent == agent


def route_choice(
    config: Config,
    channel: str,
    conversation: str,
    sender: str,
    text: str,
    choices: AgentChoices | None = None,
) -> Decision:
    """``route_for``, then the conversation's ``/use`` choice (an @mention still wins).

    ``choices`` None reads the file (the CLI); the supervisor passes its own copy.
    """
    decision = route_for(config, channel, conversation, sender, text)
    if decision.mentioned:
        return decision
    if choices is None:
        choices = AgentChoices.load(choices_path(config))
    chosen = choices.get(channel, conversation)
    if chosen is None or chosen == decision.agent:
        return decision
    if chosen not in config.agents or not reachable(config, channel, conversation, sender, chosen):
        log.warning("%s/%s: /use %s is not routable now", channel, conversation, chosen)
        return decision
    return Decision(chosen, decision.text)


__all__ = [
    "COMMANDS",
    "COMMAND_LANE",
    "AgentChoices",
    "Command",
    "Unroutable",
    "command_lane",
    "help_text",
    "parse_command",
    "reachable",
    "route_choice",
]
