"""Uploads in doubt, at the relay: looked up through ``reconcile_file``, never resent blindly.

The channel stands in for an outside platform that keeps what it was sent, can lose the answer
after keeping it, and (the reconciling variant) can say which files it holds. The relay, the
ledger file and the agent's file on disk are real.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentbridge.config import OutboxConfig
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    Channel,
    ChannelContext,
    ChannelLimits,
    ErrorClass,
    FileChannel,
    FileReconcilingChannel,
    OutFile,
    Receipt,
    Reconciled,
)
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until
from agentbridge.testing.relaying import running_relay, settled

FAST = OutboxConfig(backoff=(0.02,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)


class Uploads:
    """What the platform holds; ``lose_answers`` keeps the next N files, then times out."""

    def __init__(self) -> None:
        self.files: list[tuple[str, bytes, str]] = []
        self.lose_answers = 0
        self.lookup_down = False
        self.asked: list[OutFile] = []


class FileOnly:
    """Uploads, no lookup: an upload in doubt stays ``unknown`` for a human."""

    name = "files"
    limits = ChannelLimits(max_message_length=100, max_file_bytes=10_000)

    def __init__(self, platform: Uploads) -> None:
        self.platform = platform

    async def start(self, ctx: ChannelContext) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, item: OutboxItem) -> str | None:
        raise AssertionError(f"a file went out as text: {item.text!r}")

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        self.platform.files.append((file.name, file.data, file.caption))
        if self.platform.lose_answers:
            self.platform.lose_answers -= 1
            raise TimeoutError("read timed out")  # kept by the platform, answer lost
        return f"f{len(self.platform.files)}"

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        return None

    async def receipt(self, receipt: Receipt) -> None: ...


class FileLookup(FileOnly):
    """Can say whether it holds a file of that name and caption."""

    def __init__(self, platform: Uploads, can_tell: bool = True) -> None:
        super().__init__(platform)
        self.can_tell = can_tell

    async def reconcile_file(self, item: OutboxItem, file: OutFile) -> Reconciled:
        self.platform.asked.append(file)
        if self.platform.lookup_down:
            raise ConnectionRefusedError("lookup unreachable")
        if not self.can_tell:
            return Reconciled(None)
        held = [(n, c) for n, _, c in self.platform.files]
        if (file.name, file.caption) in held:
            return Reconciled(True, f"f{held.index((file.name, file.caption)) + 1}")
        return Reconciled(False)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "l.db") as led:
        yield led


def running(
    ledger: Ledger, channel: Channel, work: Path
) -> contextlib.AbstractAsyncContextManager[OutboxRelay]:
    """The shared test relay, files read from ``work`` (agent ``demo``'s cwd)."""
    return running_relay(ledger, channel, cwds={"demo": work}, config=FAST, reconcile_every=0.05)


async def file_row(ledger: Ledger, work: Path, name: str, data: bytes, caption: str) -> OutboxItem:
    work.mkdir(exist_ok=True)
    (work / name).write_bytes(data)
    text = file_text(work / name, len(data), caption)
    return await ledger.enqueue_reply("files", "c", text, f"{FILE_KEY_PREFIX}{name}")


def test_the_protocols_are_optional_and_separate() -> None:
    platform = Uploads()
    assert isinstance(FileOnly(platform), FileChannel)
    assert not isinstance(FileOnly(platform), FileReconcilingChannel)
    assert isinstance(FileLookup(platform), FileReconcilingChannel)


async def test_an_upload_in_doubt_that_landed_is_sent_not_uploaded_again(
    ledger: Ledger, tmp_path: Path
) -> None:
    platform = Uploads()
    platform.lose_answers = 1
    async with running(ledger, FileLookup(platform), tmp_path / "work"):
        item = await file_row(ledger, tmp_path / "work", "a.txt", b"alpha", "the a")
        row = await settled(ledger, item.id, (OutboxState.SENT,), timeout=10)
    assert platform.files == [("a.txt", b"alpha", "the a")]
    assert row.platform_message_id == "f1" and row.attempts == 1
    [asked] = platform.asked
    assert (asked.name, asked.data, asked.caption) == ("a.txt", b"alpha", "the a")


async def test_an_upload_provably_missing_is_uploaded_once_more(
    ledger: Ledger, tmp_path: Path
) -> None:
    platform = Uploads()
    platform.lose_answers = 1
    channel = FileLookup(platform)
    real_upload = channel.deliver_file

    async def lost_on_the_way(item: OutboxItem, file: OutFile) -> str | None:
        if platform.lose_answers:  # the request died before the platform kept it
            platform.lose_answers -= 1
            raise TimeoutError("read timed out")
        return await real_upload(item, file)

    channel.deliver_file = lost_on_the_way  # type: ignore[method-assign]
    async with running(ledger, channel, tmp_path / "work"):
        item = await file_row(ledger, tmp_path / "work", "b.txt", b"beta", "")
        row = await settled(ledger, item.id, (OutboxState.SENT,), timeout=10)
    assert platform.files == [("b.txt", b"beta", "")] and row.attempts == 2


async def test_an_upload_the_channel_cannot_look_up_stays_unknown(
    ledger: Ledger, tmp_path: Path
) -> None:
    for channel in (FileOnly(Uploads()), FileLookup(Uploads(), can_tell=False)):
        channel.platform.lose_answers = 1
        async with running(ledger, channel, tmp_path / "work"):
            item = await file_row(ledger, tmp_path / "work", f"{id(channel)}.bin", b"x", "")
            row = await settled(ledger, item.id, (OutboxState.UNKNOWN,), timeout=10)
            later = await file_row(ledger, tmp_path / "work", f"{id(channel)}.2", b"y", "")
            await settled(ledger, later.id, (OutboxState.SENT,), timeout=10)  # the relay goes on
        assert row.attempts == 1 and len(channel.platform.files) == 2
        assert len(channel.platform.asked) == (0 if type(channel) is FileOnly else 1)
        await ledger.mark_failed(item.id, "test: done")


async def test_an_unreachable_lookup_and_a_restart_ask_by_name_and_caption(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Asked again later (and after a restart) the relay names the file without its bytes."""
    platform = Uploads()
    platform.lose_answers, platform.lookup_down = 1, True
    async with running(ledger, FileLookup(platform), tmp_path / "work"):
        item = await file_row(ledger, tmp_path / "work", "c.txt", b"gamma", "see c")
        await settled(ledger, item.id, (OutboxState.UNKNOWN,), timeout=10)

        async def asked_twice() -> bool:
            return len(platform.asked) >= 2

        await async_wait_until(asked_twice, timeout=10, what="asked again")
    platform.lookup_down = False
    async with running(ledger, FileLookup(platform), tmp_path / "work"):  # a new bridge
        row = await settled(ledger, item.id, (OutboxState.SENT,), timeout=10)
    later = platform.asked[-1]
    assert (later.name, later.data, later.caption) == ("c.txt", b"", "see c")
    assert later.media_type == "text/plain" and len(platform.files) == 1
    assert row.platform_message_id == "f1"
