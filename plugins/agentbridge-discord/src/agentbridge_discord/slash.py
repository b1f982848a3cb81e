"""Slash commands: the core's chat commands as Discord application commands, and back to text.

At start the bot overwrites its global commands in one request (``PUT
/applications/{id}/commands``, idempotent) with one command per entry of the core's
``agentbridge.supervisor.commands.COMMANDS``: ``/stop``, ``/status``, ``/new``, ``/retry id``…
(an argument named in the help line, ``/retry ID: …``, becomes one required string option).
An invocation (INTERACTION_CREATE type 2) is turned back into the text a user would type,
``/retry 12``, and ingested like a message, so the core's one parser runs it and its answer
comes back through the outbox.

The answer goes out as an ordinary channel message, not as the interaction's followup: the
interaction token expires 15 minutes after the click, while the outbox answers whenever the
command center gets to it (after a restart, a rate limit, a busy supervisor), and a channel
message has nonce dedup and ``reconcile``; a followup would have neither and would need the
token (a credential) kept across restarts. The click itself is acknowledged at once with a
short visible echo of the command (Discord wants an answer within 3 seconds).
"""

from __future__ import annotations

import re
from typing import Any

from agentbridge.supervisor.commands import COMMANDS

#: Discord's option types: 3 = STRING; command types: 1 = CHAT_INPUT
STRING_OPTION = 3
CHAT_INPUT = 1
_HELP = re.compile(r"/(?P<name>[a-z]+)(?:\s+(?P<arg>[A-Z]+))?\s*:\s*(?P<text>.*)")


def definitions() -> list[dict[str, Any]]:
    """The bulk-overwrite payload: one CHAT_INPUT command per core command."""
    out: list[dict[str, Any]] = []
    for name, help_line in COMMANDS.items():
        match = _HELP.fullmatch(help_line)
        text = match["text"] if match else help_line
        command: dict[str, Any] = {
            "name": name,
            "type": CHAT_INPUT,
            "description": (text or name)[:100],
            "contexts": [0, 1],  # guild channels and the bot's DMs
            "integration_types": [0],  # installed to a guild (the bot scope)
        }
        if match and match["arg"]:
            command["options"] = [
                {
                    "type": STRING_OPTION,
                    "name": match["arg"].lower(),
                    "description": match["arg"].lower(),
                    "required": True,
                }
            ]
        out.append(command)
    return out


def command_text(data: Any) -> str | None:
    """``/name arg…`` for an invocation's ``data``; None when it is not one of ours."""
    if not isinstance(data, dict):
        return None
    name = data.get("name")
    if not isinstance(name, str) or name not in COMMANDS:
        return None
    args = [
        " ".join(str(opt.get("value", "")).split())  # one line: the parser wants one
        for opt in data.get("options") or []
        if isinstance(opt, dict) and opt.get("value") is not None
    ]
    return " ".join([f"/{name}", *[a for a in args if a]])
