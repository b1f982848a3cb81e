"""agentbridge Discord channel: discord.py gateway in, REST out, cursor-based catch-up."""

from agentbridge_discord.channel import DiscordChannel
from agentbridge_discord.settings import DiscordSettings, load_token, parse_settings

__all__ = ["DiscordChannel", "DiscordSettings", "load_token", "parse_settings"]
