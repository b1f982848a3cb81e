"""The entry point (``[project.entry-points.agentbridge] lark``): registration and wake.

The channel registers only when ``[channels.lark]`` exists, so installing the package changes
nothing until the user configures an app. A bad table stops the bridge with one line.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from agentbridge.config import Config
from agentbridge.plugin.doctor import DoctorCheck
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


@hookimpl
def host_woke(slept_seconds: float) -> None:
    """After a sleep the WebSocket is likely dead: reconnect and catch up now."""
    channel_module = sys.modules.get("agentbridge_lark.channel")  # not loaded: none live
    for channel in list(getattr(channel_module, "LIVE", ())):
        channel.wake()


@hookimpl
def doctor_checks(config: Config) -> Awaitable[list[DoctorCheck]] | None:
    """``agentbridge doctor``: config, credentials, domain and a tenant token (when set up)."""
    if config.channels.get("lark") is None:
        return None
    from agentbridge_lark.doctor import checks

    return checks(config)
