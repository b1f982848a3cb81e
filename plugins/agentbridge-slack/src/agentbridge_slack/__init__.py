"""agentbridge-slack: a Slack channel (Socket Mode) for agentbridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentbridge_slack.settings import SlackSettings, parse_settings

if TYPE_CHECKING:
    from agentbridge_slack.channel import SlackChannel


def __getattr__(name: str) -> Any:
    """``SlackChannel`` loads the platform SDK: only when asked for (the entry point imports this
    package on every ``agentbridge`` start, configured or not)."""
    if name == "SlackChannel":
        from agentbridge_slack.channel import SlackChannel

        return SlackChannel
    raise AttributeError(name)


__all__ = ["SlackChannel", "SlackSettings", "parse_settings"]
