"""Which agent a message goes to: ``[[routes]]`` by channel, conversation, sender and @mention.

- No ``[[routes]]``: every message goes to the first agent (and ``@name`` picks any agent).
- A route matches a message when every key it sets equals the message's: ``channel`` (``"*"``
  or left out: any channel), ``conversation``, ``sender``. The most specific match wins
  (conversation and sender weigh more than channel); among equals, the first in the file. A
  route that sets no key at all is the *default route*.
- ``@name`` at the start of the text sends the message to agent ``name`` if some route that
  matches the message names it (every agent when no routes are configured); the mention is
  stripped. So an agent is reachable by mention from a channel once a route of that channel
  names it, even when another route of the same channel wins without a mention. ``@word`` that
  names no configured agent is ordinary text.
- Nothing matches (or ``@name`` names an agent this message may not reach): ``Unroutable``, one
  readable line. Channels refuse the message with it (the sender sees it); nothing is stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentbridge.config import Config, Route

log = logging.getLogger(__name__)

_MENTION = re.compile(r"@([A-Za-z0-9][A-Za-z0-9_.-]*)(?=[\s,:;]|$)[\s,:;]*")


class Unroutable(ValueError):
    """No route takes this message; the text says why and how to fix it, in one line."""


@dataclass(frozen=True)
class Decision:
    """Where a message goes and the text it carries there (a mention stripped)."""

    agent: str
    text: str
    mentioned: bool = False


def _matches(route: Route, channel: str, conversation: str, sender: str) -> bool:
    return (
        route.channel in ("*", channel)
        and route.conversation in (None, conversation)
        and route.sender in (None, sender)
    )


def _weight(route: Route) -> int:
    return (
        (route.channel != "*")
        + 2 * (route.conversation is not None)
        + 2 * (route.sender is not None)
    )


def _mention(text: str, agents: Sequence[str]) -> tuple[str, str] | None:
    """(agent, rest of the text) when the text starts with ``@<configured agent>``."""
    match = _MENTION.match(text.lstrip())
    if match is None:
        return None
    name = match.group(1)
    found = name if name in agents else next((a for a in agents if a.lower() == name.lower()), None)
    return None if found is None else (found, text.lstrip()[match.end() :])


def route_message(
    routes: Sequence[Route],
    agents: Mapping[str, Any],
    channel: str,
    conversation: str,
    sender: str,
    text: str,
) -> Decision:
    """Pick the agent for one message (see the module doc); raises ``Unroutable``."""
    names = list(agents)
    where = f"channel {channel!r}, conversation {conversation!r}, sender {sender!r}"
    if routes:
        matching = [r for r in routes if _matches(r, channel, conversation, sender)]
        reachable = list(dict.fromkeys(r.agent for r in matching))
    else:
        matching, reachable = [], names
    mention = _mention(text, names)
    if mention is not None:
        agent, rest = mention
        if agent not in reachable:
            raise Unroutable(
                f"@{agent}: agent {agent!r} takes no messages from {where}"
                " (add a [[routes]] entry naming it)"
            )
        if not rest.strip():
            raise Unroutable(f"@{agent}: nothing to send after the mention")
        return Decision(agent, rest, mentioned=True)
    if not routes:
        if not names:
            raise Unroutable("no agents are configured")
        return Decision(names[0], text)
    if not matching:
        raise Unroutable(
            f"no route for {where}; add a [[routes]] entry for it or a default route"
            " (a [[routes]] entry with only agent = ...)"
        )
    best = max(matching, key=_weight)  # max keeps the first of equals: file order
    return Decision(best.agent, text)


def route_for(config: Config, channel: str, conversation: str, sender: str, text: str) -> Decision:
    """``route_message`` over a loaded config."""
    return route_message(config.routes, config.agents, channel, conversation, sender, text)


def route_ingest(
    config: Config, channel: str, conversation: str, sender: str, text: str
) -> tuple[str, str]:
    """(agent, text) for the bridge's ingest; an unroutable message is logged, then raised."""
    try:
        decision = route_for(config, channel, conversation, sender, text)
    except Unroutable as exc:
        log.warning("%s: refused an unroutable message: %s", channel, exc)
        raise
    return decision.agent, decision.text
