"""The entry point (``[project.entry-points.agentbridge] telegram``): registration, wake, doctor.

The channel registers only when ``[channels.telegram]`` exists, so installing the package
changes nothing until the user configures a bot. A bad table stops the bridge with one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agentbridge.config import Config
from agentbridge.plugin.doctor import DoctorCheck
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel

from agentbridge_telegram.channel import LIVE, TelegramChannel
from agentbridge_telegram.settings import parse_settings


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Register the Telegram channel when it is configured."""
    table = config.channels.get("telegram")
    if table is None:
        return
    register(TelegramChannel(parse_settings(table)))


@hookimpl
def host_woke(slept_seconds: float) -> None:
    """After a sleep the long poll's TCP connection is likely dead: redial now, not in 45 s."""
    for channel in list(LIVE):
        channel.wake()


@hookimpl
def doctor_checks(config: Config) -> Awaitable[list[DoctorCheck]] | None:
    """``agentbridge doctor``: config, token and ``getMe`` (when configured)."""
    if config.channels.get("telegram") is None:
        return None
    from agentbridge_telegram.doctor import checks

    return checks(config)
