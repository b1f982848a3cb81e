"""Registers the web console channel; a default plugin, like any third-party one."""

from __future__ import annotations

from collections.abc import Callable

from agentbridge.config import Config
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """On by default: ``[console] enabled = false`` (or ``up --no-console``) turns it off."""
    if config.console.enabled:
        from agentbridge.channels.web.channel import WebChannel
        from agentbridge.delivery.outfiles import FileRoots

        register(WebChannel(config.console, FileRoots.from_config(config)))
