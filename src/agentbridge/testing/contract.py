"""The channel contract suite: what every channel must do, as tests a plugin's suite inherits.

Usage (a plugin's ``tests/test_contract.py``)::

    # nothing to declare: installing agentbridge registers this module as a pytest plugin
    from agentbridge.testing.contract import ChannelContract, HarnessBase

    class MyHarness(HarnessBase):
        ...  # make the fake platform deliver inbound messages, record acks and sent texts

    class TestMyChannel(ChannelContract):
        @pytest.fixture
        def harness(self):
            return MyHarness(MyChannel(...))

The suite runs the channel against a real ledger in ``tmp_path``. The bridge's ``ingest`` is
wrapped to record when each commit returned; the harness records when the platform saw each
ack; "ingest before ack" is then a comparison of two clocks, not a promise in a README.
Replies go out at most once: a send whose answer was lost must be classified ``unknown`` and
the real relay must never send it again. A ``FileChannel`` also runs ``contract_files.py``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from agentbridge.config import OutboxConfig
from agentbridge.delivery.relay import OutboxRelay, chunk_text, classify
from agentbridge.kinds import ReceiptKind
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.protocols import (
    Channel,
    ChannelLimits,
    ErrorClass,
    Receipt,
    ReconcilingChannel,
)
from agentbridge.states import OutboxState
from agentbridge.testing.bridge import ContractBridge, complete_next, contract_bridge
from agentbridge.testing.contract_files import FileChannelContract
from agentbridge.testing.harness import ChannelHarness, HarnessBase

__all__ = [
    "ChannelContract",
    "ChannelHarness",
    "ContractBridge",
    "HarnessBase",
    "complete_next",
    "contract_bridge",
]

#: replies longer than this are not built in full by the limits test (a 1 MB limit means "none")
LIMIT_PROBE_CAP = 100_000


#: what a lost answer looks like to a client: the platform may have acted
AMBIGUOUS_ERRORS: tuple[BaseException, ...] = (
    TimeoutError("read timed out"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
)
#: failures that prove the request never left: a retry cannot deliver twice
NOT_SENT_ERRORS: tuple[BaseException, ...] = (
    ConnectionRefusedError(111, "Connection refused"),
    socket.gaierror(-2, "Name or service not known"),
)


class ChannelContract(FileChannelContract):
    """Subclass as ``TestSomething(ChannelContract)`` and override the ``harness`` fixture
    (files: ``contract_files.py``)."""

    conversation = "contract-conversation"
    sender = "contract-sender"

    @pytest.fixture
    def harness(self) -> ChannelHarness:
        """Override: return a fresh harness (not started) around a fresh channel."""
        raise NotImplementedError("override the 'harness' fixture in your ChannelContract subclass")

    @pytest_asyncio.fixture
    async def bridge(
        self, harness: ChannelHarness, tmp_path: Path
    ) -> AsyncIterator[ContractBridge]:
        """The harness started against a real ledger; stopped and closed afterwards."""
        async with contract_bridge(harness.channel.name, tmp_path / "bridge") as bridge:
            await harness.start(bridge.ctx)
            try:
                yield bridge
            finally:
                await harness.stop()

    async def _rows(self, bridge: ContractBridge, channel: Channel) -> list[Message]:
        return await bridge.ledger.list_messages(channel=channel.name)

    # ------------------------------------------------------------------ the contract

    def test_is_a_channel(self, harness: ChannelHarness) -> None:
        """The object satisfies the ``Channel`` protocol and declares usable limits."""
        channel = harness.channel
        assert isinstance(channel, Channel), "missing Channel methods/attributes"
        assert isinstance(channel.name, str) and channel.name, "name must be a non-empty str"
        assert isinstance(channel.limits, ChannelLimits)
        assert channel.limits.max_message_length > 0

    @pytest.mark.asyncio
    async def test_ingest_before_ack(self, harness: ChannelHarness, bridge: ContractBridge) -> None:
        """The platform hears "received" only after the ledger committed; never if it failed."""
        await harness.inbound("contract-1", "hello contract", self.conversation, self.sender)
        rows = await self._rows(bridge, harness.channel)
        assert len(rows) == 1 and "hello contract" in rows[0].text, rows
        acks = harness.ack_times("contract-1")
        assert acks, "the platform never saw an ack for a message the ledger stored"
        assert len(bridge.commits) == 1
        committed = bridge.commits[0][1]
        assert all(ack >= committed for ack in acks), (
            f"acked {committed - min(acks):.6f}s before the ledger commit returned"
        )

        bridge.fail_ingest = True
        with contextlib.suppress(Exception):
            await harness.inbound("contract-2", "lost?", self.conversation, self.sender)
        assert harness.ack_times("contract-2") == [], (
            "the channel acked a message the ledger failed to store: it is lost"
        )
        assert len(await self._rows(bridge, harness.channel)) == 1

    @pytest.mark.asyncio
    async def test_redelivery_is_idempotent(
        self, harness: ChannelHarness, bridge: ContractBridge
    ) -> None:
        """The same platform message delivered twice is one ledger row, and acked both times."""
        for _ in range(2):
            await harness.inbound("contract-3", "only once", self.conversation, self.sender)
        rows = await self._rows(bridge, harness.channel)
        assert len(rows) == 1, f"a redelivery created {len(rows)} rows: use the platform id as key"
        assert len(harness.ack_times("contract-3")) == 2, (
            "a redelivery must be acked too, or the platform keeps redelivering"
        )

    async def _reply_item(self, bridge: ContractBridge, channel: Channel, text: str) -> OutboxItem:
        """A real outbox row for a real completed message (the relay hands these to deliver)."""
        result = await bridge.ctx.ingest(self.conversation, self.sender, "question", key="q")
        await complete_next(bridge.ledger, text)
        return await bridge.ledger.enqueue_reply(
            channel.name,
            self.conversation,
            text,
            key="contract-reply",
            message_id=result.message.id,
        )

    @pytest.mark.asyncio
    async def test_limits_respected(self, harness: ChannelHarness, bridge: ContractBridge) -> None:
        """The bridge chunks, the channel declares: a reply longer than
        ``limits.max_message_length``, split by the relay's own chunker, reaches the platform
        whole, and no message the platform received exceeds the limit."""
        channel = harness.channel
        limit = channel.limits.max_message_length
        size = min(limit * 2 + limit // 2, LIMIT_PROBE_CAP)
        text = ("0123456789abcdef" * (size // 16 + 1))[:size]
        item = await self._reply_item(bridge, channel, text)
        parts = chunk_text(item.text, limit)
        for part in parts:  # exactly as the relay calls deliver
            platform_id = await channel.deliver(replace(item, text=part))
            assert platform_id is None or isinstance(platform_id, str)
        sent = harness.sent()
        if not sent:
            return  # no platform (replies are read from the ledger): nothing can overflow
        assert all(len(chunk) <= limit for chunk in sent), "a message over the declared limit"
        assert "".join(sent) == text, "the reply reached the platform altered or partly"

    @pytest.mark.asyncio
    async def test_errors_classified(self, harness: ChannelHarness, bridge: ContractBridge) -> None:
        """A failed delivery says whether a retry can help (``DeliveryError.error_class`` or
        ``classify_error``), as the relay decides it; a healed platform then accepts the item."""
        if not harness.can_fail:
            pytest.skip("this channel has no platform that can fail a delivery")
        channel = harness.channel
        item = await self._reply_item(bridge, channel, "a reply")
        for wanted in (ErrorClass.PERMANENT, ErrorClass.TRANSIENT):
            harness.fail_deliveries(wanted)
            try:
                await channel.deliver(item)
            except Exception as exc:
                got, _ = classify(exc, channel, None)  # the relay's own decision
                assert got == wanted, f"a {wanted} platform error was classified as {got}"
            else:
                pytest.fail(f"deliver() returned although the platform failed ({wanted})")
        harness.fail_deliveries(None)
        await channel.deliver(item)
        assert harness.sent()[-1:] == ["a reply"]

    def test_ambiguous_errors_are_unknown(self, harness: ChannelHarness) -> None:
        """At most once: a timeout or reset after the request left proves nothing, so the
        relay must classify it ``unknown`` for this channel (a retry could send the reply
        twice); an error proving nothing left (refused, DNS) stays ``transient``."""
        channel = harness.channel
        for exc in AMBIGUOUS_ERRORS:
            got, _ = classify(exc, channel, None)
            assert got == ErrorClass.UNKNOWN, (
                f"{type(exc).__name__} from deliver was classified {got}: the platform may have"
                " acted, so a retry can deliver the reply twice; classify_error must say"
                " ErrorClass.UNKNOWN (or return None for the built-in rules)"
            )
        for exc in NOT_SENT_ERRORS:
            got, _ = classify(exc, channel, None)
            assert got == ErrorClass.TRANSIENT, (
                f"{type(exc).__name__} proves nothing was sent, yet was classified {got}"
            )

    @pytest.mark.asyncio
    async def test_unknown_outcome_never_resent(
        self, harness: ChannelHarness, bridge: ContractBridge
    ) -> None:
        """The platform acts on a delivery and the answer is lost: ``deliver`` raises an error
        the relay classifies ``unknown``; the real relay leaves the row ``unknown`` (or, for a
        channel with ``reconcile``, finds it arrived) and never sends it again."""
        if not harness.can_fail:
            pytest.skip("this channel has no platform that can fail a delivery")
        channel = harness.channel
        item = await self._reply_item(bridge, channel, "a reply in doubt")
        harness.fail_deliveries(ErrorClass.UNKNOWN)
        try:
            await channel.deliver(item)
        except Exception as exc:
            got, _ = classify(exc, channel, None)
            assert got == ErrorClass.UNKNOWN, (
                f"a delivery the platform acted on, whose answer was lost, was classified {got}:"
                " the relay would send it again"
            )
        else:
            pytest.fail("deliver() returned although the platform's answer was lost")
        assert harness.sent().count("a reply in doubt") == 1, (
            "fail_deliveries(ErrorClass.UNKNOWN) must let the platform act, then lose the answer"
        )

        ledger = bridge.ledger
        await ledger.reserve_send(item.id)  # that row is in doubt now: out of the way
        await ledger.mark_unknown(item.id, "contract: answer lost")
        text = "another reply in doubt"
        row = await ledger.enqueue_reply(
            channel.name,
            self.conversation,
            text,
            key="contract-unknown",
            message_id=item.message_id,
        )
        relay = OutboxRelay(ledger, {channel.name: channel}, OutboxConfig(backoff=(0.01,)))
        await relay.deliver(await ledger.reserve_send(row.id))  # as the relay's loop does
        state = (await ledger.get_reply(row.id)).state
        settled = {OutboxState.UNKNOWN}
        if isinstance(channel, ReconcilingChannel):
            settled.add(OutboxState.SENT)  # its reconcile found the reply on the platform
        assert state in settled, f"a reply whose answer was lost ended {state}"
        harness.fail_deliveries(None)
        while (due := await ledger.claim_due_reply(channels=[channel.name])) is not None:
            assert due.id != row.id, "the relay would send a reply in doubt again"
            await ledger.mark_failed(due.id, "contract: not under test")
        assert harness.sent().count(text) == 1

    @pytest.mark.asyncio
    async def test_receipt_never_raises(
        self, harness: ChannelHarness, bridge: ContractBridge
    ) -> None:
        """Receipts are best effort: a platform hiccup there must not break the pipeline."""
        for status in ReceiptKind:  # every kind, "interrupted" included
            await harness.channel.receipt(
                Receipt(1, harness.channel.name, self.conversation, status, platform_message_id="1")
            )

    @pytest.mark.asyncio
    async def test_stop_twice(self, harness: ChannelHarness, bridge: ContractBridge) -> None:
        """``stop()`` is called on every shutdown path; calling it again must be harmless."""
        await harness.stop()
        await harness.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Loaded as a plugin (``pytest_plugins`` or the pytest11 entry point): declare the marker."""
    config.addinivalue_line("markers", "channel_contract: the agentbridge channel contract suite")
