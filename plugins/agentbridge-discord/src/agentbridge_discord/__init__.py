"""agentbridge Discord channel: discord.py gateway in, REST out, cursor-based catch-up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentbridge_discord.settings import DiscordSettings, load_token, parse_settings

if TYPE_CHECKING:
    from agentbridge_discord.channel import DiscordChannel


def __getattr__(name: str) -> Any:
    """``DiscordChannel`` loads the platform SDK: only when asked for (the entry point imports this
    package on every ``agentbridge`` start, configured or not)."""
    if name == "DiscordChannel":
        from agentbridge_discord.channel import DiscordChannel

        return DiscordChannel
    raise AttributeError(name)


__all__ = ["DiscordChannel", "DiscordSettings", "load_token", "parse_settings"]
