"""The files ``agentbridge new-channel`` writes, as ``string.Template``s ($name, $pkg, $cls).

Kept as data apart from ``scaffold.py`` so the templates read like the files they become;
``tests/test_scaffold.py`` runs the generated contract suite, so a template that rots fails CI.
"""

from __future__ import annotations

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "agentbridge-$name"
version = "0.1.0"
description = "agentbridge channel plugin: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["agentbridge"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.23"]

# agentbridge finds the plugin through this entry point (group "agentbridge")
[project.entry-points.agentbridge]
$name = "$pkg.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
testpaths = ["tests"]
"""

README = """\
# agentbridge-$name

An [agentbridge](https://github.com/) channel plugin for $name.

## Install and enable

    pip install -e .            # agentbridge discovers it through its entry point
    agentbridge plugins         # should list "$name"

Then add a table to the agentbridge config; the channel only starts when it exists:

    [channels.$name]
    # token_file = "~/.config/agentbridge/$name.token"

## Develop

- `src/$pkg/channel.py`: the channel. Replace the `TODO` in `${cls}Client` with the
  platform's API calls; keep the rule in `${cls}Channel.handle`: **ingest first, ack after**,
  and the one in `classify_error`: **retry only what proves the platform did not act** (a
  timeout after the request left is `unknown`: the relay never resends it blindly).
- `tests/test_contract.py`: the agentbridge channel contract suite against a fake platform.

    pip install -e '.[test]'
    pytest

See agentbridge's `docs/plugins.md` for every hook and the contract.
"""

INIT = '''\
"""agentbridge channel plugin for $name."""
'''

PLUGIN = '''\
"""Hook implementations: agentbridge loads this module through the entry point."""

from __future__ import annotations

from collections.abc import Callable

from agentbridge.config import Config
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel

from $pkg.channel import ${cls}Channel, ${cls}Client


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Register the channel only when the user configured ``[channels.$name]``."""
    table = config.channels.get("$name")
    if table is not None:
        register(${cls}Channel(${cls}Client(table)))
'''

CHANNEL = '''\
"""The $name channel: inbound updates from the platform into the ledger, replies back out."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    ChannelContext,
    ChannelLimits,
    DeliveryError,
    ErrorClass,
    Receipt,
)


@dataclass(frozen=True)
class Update:
    """One inbound message as the platform gives it."""

    id: str  # the platform's message id: the idempotency key for redeliveries
    conversation: str
    sender: str
    text: str


class PlatformError(Exception):
    """An error answer from the platform's API."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


Handler = Callable[[Update], Awaitable[None]]


class PlatformClient(Protocol):
    """What the channel needs from the platform; the tests pass a fake one."""

    async def listen(self, handler: Handler) -> None:
        """Start receiving: call ``await handler(update)`` per update, and ack an update to
        the platform only if the handler returned (an exception means: redeliver later)."""

    async def close(self) -> None:
        """Stop receiving; safe to call twice."""

    async def send(self, conversation: str, text: str) -> str:
        """Post one message; return its platform id; raise ``PlatformError``."""


class ${cls}Client:
    """The real platform client. TODO: implement with the platform's API or SDK."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    async def listen(self, handler: Handler) -> None:
        raise NotImplementedError("TODO: connect to $name and call handler per update")

    async def close(self) -> None:
        return None

    async def send(self, conversation: str, text: str) -> str:
        raise NotImplementedError("TODO: send a message to $name")


class ${cls}Channel:
    """The agentbridge ``Channel`` for $name."""

    name = "$name"
    #: the relay splits replies into chunks of at most this many characters
    limits = ChannelLimits(max_message_length=4000)

    def __init__(self, client: PlatformClient) -> None:
        self.client = client
        self._ctx: ChannelContext | None = None

    async def start(self, ctx: ChannelContext) -> None:
        self._ctx = ctx
        await self.client.listen(self.handle)

    async def handle(self, update: Update) -> None:
        """Store one update. Returning is the ack: it must happen after the commit."""
        assert self._ctx is not None, "start() first"
        await self._ctx.ingest(
            conversation=update.conversation,
            sender=update.sender,
            text=update.text,
            key=update.id,  # a redelivery of the same update becomes the same ledger row
        )

    async def stop(self) -> None:
        await self.client.close()

    async def deliver(self, item: OutboxItem) -> str | None:
        try:
            return await self.client.send(item.conversation, item.text)
        except PlatformError as exc:
            raise DeliveryError(
                f"$name: {exc} (HTTP {exc.status})",
                _classify_status(exc.status),
                exc.retry_after,
            ) from exc

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Replies go out at most once: retry only what proves the platform did not act."""
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
            return ErrorClass.TRANSIENT  # never connected: nothing was sent
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return ErrorClass.UNKNOWN  # the answer was lost: the reply may be in the chat
        return None  # the bridge's built-in rules (anything unproven is unknown)

    # Optional: if the platform can look up what the bot posted, add
    #     async def reconcile(self, item: OutboxItem) -> Reconciled: ...
    # (agentbridge.plugin.protocols.Reconciled: landed True / False / None) and the relay asks it
    # about every reply whose send ended unknown instead of leaving it to a human.

    async def receipt(self, receipt: Receipt) -> None:
        # best effort: e.g. a reaction on the original message; never raise from here
        return None


def _classify_status(status: int) -> ErrorClass:
    """429 and 408 say the request was not acted on: retry. Other 4xx will fail the same
    way again. A 5xx came after the body was sent: the platform may have posted it, so it
    is unknown (make a status transient only if the platform documents it as not acted on,
    e.g. a 503 with Retry-After)."""
    if status in (408, 429):
        return ErrorClass.TRANSIENT
    if 400 <= status < 500:
        return ErrorClass.PERMANENT
    return ErrorClass.UNKNOWN
'''

TEST = '''\
"""The agentbridge channel contract suite, run against a fake $name platform."""

from __future__ import annotations

import pytest

# installing agentbridge registers its contract suite as a pytest plugin (pytest11)
from agentbridge.plugin.protocols import ErrorClass
from agentbridge.testing.contract import ChannelContract, HarnessBase

from $pkg import channel as ch


class FakePlatform:
    """Stands in for $name's API: pushes updates, records what was sent, fails on demand."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.handler: ch.Handler | None = None

    async def listen(self, handler: ch.Handler) -> None:
        self.handler = handler

    async def close(self) -> None:
        self.handler = None

    async def send(self, conversation: str, text: str) -> str:
        if self.harness.failing is ErrorClass.PERMANENT:
            raise ch.PlatformError("chat not found", 400)
        if self.harness.failing is ErrorClass.TRANSIENT:
            raise ch.PlatformError("too many requests", 429, retry_after=1)
        if len(text) > ch.${cls}Channel.limits.max_message_length:
            raise ch.PlatformError("message is too long", 400)
        self.harness.sent_texts.append(text)
        if self.harness.failing is ErrorClass.UNKNOWN:  # posted, then the answer is lost
            raise TimeoutError("read timed out")
        return f"m{len(self.harness.sent_texts)}"


class Harness(HarnessBase):
    can_fail = True

    def __init__(self) -> None:
        self.platform = FakePlatform(self)
        super().__init__(ch.${cls}Channel(self.platform))

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        assert self.platform.handler is not None, "the channel is not listening"
        try:
            await self.platform.handler(ch.Update(platform_id, conversation, sender, text))
        except Exception:
            return  # no ack: the platform would redeliver
        self.record_ack(platform_id)


class TestContract(ChannelContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return Harness()
'''
