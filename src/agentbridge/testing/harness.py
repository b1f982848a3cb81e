"""What a channel's author supplies to the contract suite: a handle on the (fake) platform.

``ChannelHarness`` is the shape; ``HarnessBase`` does the bookkeeping (acks, texts and files
the platform received, the failure switch), so a harness overrides ``inbound`` and little else.
"""

from __future__ import annotations

import time
from typing import Protocol

from agentbridge.plugin.protocols import Channel, ChannelContext, ErrorClass

__all__ = ["ChannelHarness", "HarnessBase"]


class ChannelHarness(Protocol):
    """What a channel's author supplies: a handle on the (fake) platform behind the channel."""

    channel: Channel
    #: False when there is no platform that can fail deliveries (the error test is skipped)
    can_fail: bool

    async def start(self, ctx: ChannelContext) -> None:
        """Start the fake platform (if any), then ``channel.start(ctx)``."""

    async def stop(self) -> None:
        """Stop the channel, then the fake platform; safe to call twice."""

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        """Make the platform deliver one message (again, for a redelivery) and wait until the
        channel answered it: an ack, or an error the platform would redeliver after."""

    def ack_times(self, platform_id: str) -> list[float]:
        """``time.monotonic()`` of each ack the platform received for ``platform_id``."""

    def sent(self) -> list[str]:
        """Texts the platform received from ``deliver``, oldest first."""

    def sent_files(self) -> list[tuple[str, bytes]]:
        """(name, bytes) of each file the platform received (a ``FileChannel``'s uploads)."""

    def fail_deliveries(self, error_class: ErrorClass | None) -> None:
        """Make the platform fail every delivery; None heals it.

        ``PERMANENT``: refuse for good (chat not found). ``TRANSIENT``: refuse in a way that
        proves nothing was done (429, connection refused). ``UNKNOWN``: *act* on the delivery
        (the text counts in ``sent()``), then lose the answer (time out, reset the connection).
        """


class HarnessBase:
    """A harness with the bookkeeping done: subclasses override ``inbound`` (and more)."""

    can_fail = False

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.acks: dict[str, list[float]] = {}
        self.sent_texts: list[str] = []
        self.sent_uploads: list[tuple[str, bytes]] = []
        self.failing: ErrorClass | None = None

    async def start(self, ctx: ChannelContext) -> None:
        """Start the channel."""
        await self.channel.start(ctx)

    async def stop(self) -> None:
        """Stop the channel."""
        await self.channel.stop()

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        """Required: the one thing only the author knows how to do."""
        raise NotImplementedError("the harness must implement inbound()")

    def record_ack(self, platform_id: str) -> None:
        """Call when the platform sees the channel's ack of ``platform_id``."""
        self.acks.setdefault(platform_id, []).append(time.monotonic())

    def ack_times(self, platform_id: str) -> list[float]:
        """See ``ChannelHarness``."""
        return list(self.acks.get(platform_id, []))

    def sent(self) -> list[str]:
        """See ``ChannelHarness``."""
        return list(self.sent_texts)

    def sent_files(self) -> list[tuple[str, bytes]]:
        """See ``ChannelHarness``."""
        return list(self.sent_uploads)

    def fail_deliveries(self, error_class: ErrorClass | None) -> None:
        """See ``ChannelHarness``; only meaningful when ``can_fail`` is True (a fake platform
        reads ``self.failing``: ``UNKNOWN`` means record the text as sent, then time out)."""
        self.failing = error_class
