"""The entry point (``[project.entry-points.agentbridge] discord``): registration, doctor.

The channel registers only when ``[channels.discord]`` exists, so installing the package
changes nothing until the user configures a bot. A bad table stops the bridge with one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentbridge.config import Config
from agentbridge.plugin.doctor import DoctorCheck
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


@hookimpl
def doctor_checks(config: Config) -> Awaitable[list[DoctorCheck]] | None:
    """``agentbridge doctor``: config, token, API and the portal's intent (when configured)."""
    if config.channels.get("discord") is None:
        return None
    from agentbridge_discord.doctor import checks

    return checks(config)
