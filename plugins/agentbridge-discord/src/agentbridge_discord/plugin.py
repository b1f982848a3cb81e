"""The entry point (``[project.entry-points.agentbridge] discord``): registration.

The channel registers only when ``[channels.discord]`` exists, so installing the package
changes nothing until the user configures a bot. A bad table stops the bridge with one line.
"""

from __future__ import annotations

from collections.abc import Callable

from agentbridge.config import Config
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel

from agentbridge_discord.settings import parse_settings


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Register the Discord channel when it is configured."""
    table = config.channels.get("discord")
    if table is None:
        return
    settings = parse_settings(table)
    from agentbridge_discord.channel import DiscordChannel  # the SDK loads only when configured

    register(DiscordChannel(settings))
