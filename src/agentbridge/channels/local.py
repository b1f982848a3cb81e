"""The local channel: messages sent with ``agentbridge send`` and read back with ``wait``/``show``.

Its replies need no platform: "delivering" one records it as sent, and the CLI reads the reply
from the ledger.
"""

from __future__ import annotations

from collections.abc import Callable

from agentbridge.config import Config
from agentbridge.models import OutboxItem
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel, ChannelContext, ChannelLimits, ErrorClass, Receipt


class LocalChannel:
    """The CLI as a channel."""

    name = "local"
    singleton = False  #: fleet: the CLI of every node sends through its own supervisor
    limits = ChannelLimits(max_message_length=1_000_000)

    async def start(self, ctx: ChannelContext) -> None:
        """Nothing to receive in-process: the CLI writes to the ledger directly."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def deliver(self, item: OutboxItem) -> str | None:
        """The reply is already in the ledger, where ``agentbridge wait`` reads it."""
        return f"local-{item.id}"

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """No platform, no platform errors."""
        return None

    async def receipt(self, receipt: Receipt) -> None:
        """The CLI polls the ledger; nothing to push."""


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Always present: the CLI is how a newcomer first talks to an agent."""
    register(LocalChannel())
