"""The entry point (``[project.entry-points.agentbridge] lark``): registration.

The channel registers only when ``[channels.lark]`` exists, so installing the package changes
nothing until the user configures an app. A bad table stops the bridge with one line.
"""

from __future__ import annotations

from collections.abc import Callable

from agentbridge.config import Config
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel

from agentbridge_lark.settings import parse_settings


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Register the Lark channel when it is configured."""
    table = config.channels.get("lark")
    if table is None:
        return
    settings = parse_settings(table)
    from agentbridge_lark.channel import LarkChannel  # the SDK loads only when configured

    register(LarkChannel(settings))
