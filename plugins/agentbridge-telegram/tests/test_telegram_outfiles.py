"""Files back from the agent: the real MCP handler makes the row, the real relay sends it.

``send_file`` (``supervisor/control_mcp.py``) writes the outbox row; the outbox relay checks
and reads the file and the channel uploads it to the fake Bot API as multipart, which keeps
the bytes. Also: a long reply goes as one ``reply.md``; a file too big or gone fails its row
for good with a text to the user instead; an upload whose answer was lost is never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agentbridge.config import Config, OutboxConfig, parse_config
from agentbridge.delivery.outfiles import FileRoots
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import OutboxItem
from agentbridge.states import OutboxState
from agentbridge.supervisor.control_mcp import McpHandlers
from agentbridge.testing import async_wait_until
from telegram_helpers import CHAT

from agentbridge_telegram import TelegramChannel
from agentbridge_telegram.testing import FakeBotApi

FAST = OutboxConfig(backoff=(0.05,), max_retries=5, ttl_seconds=60, drain_budget_seconds=5)
SETTLED = (OutboxState.SENT, OutboxState.UNKNOWN, OutboxState.FAILED)
#: a 1×1 PNG: an image Telegram shows as a photo
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)
MB = 1024 * 1024


def bridge_config(tmp_path: Path) -> Config:
    """One agent with its cwd, whose own messages go to our Telegram chat."""
    (tmp_path / "work").mkdir(exist_ok=True)
    return parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "agents": {"demo": {"runtime": "demo", "cwd": str(tmp_path / "work")}},
            "mcp": {
                "notify_channel": "telegram",
                "notify_conversation": str(CHAT),
                "max_file_bytes": 100 * MB,
                "rate_per_minute": 100,
            },
        }
    )


@contextlib.asynccontextmanager
async def relay_for(
    ledger: Ledger, channel: TelegramChannel, config: Config
) -> AsyncIterator[OutboxRelay]:
    """The real relay, woken by the ledger, reading files from the agent's roots."""
    relay = OutboxRelay(ledger, {"telegram": channel}, FAST, files=FileRoots.from_config(config))
    unsubscribe = ledger.on_change(lambda kind, _id: relay.poke() if kind == "outbox" else None)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        unsubscribe()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settled(ledger: Ledger, outbox_id: int) -> OutboxItem:
    async def check() -> OutboxItem | None:
        item = await ledger.get_reply(outbox_id)
        return item if item.state in SETTLED else None

    return await async_wait_until(check, timeout=20, what="reply settled")


def told(fake: FakeBotApi) -> Any:
    """A condition: the fallback text reached the chat."""

    async def check() -> bool:
        return len(fake.sent) == 1

    return check


async def send_file(ledger: Ledger, config: Config, path: str, caption: str = "") -> OutboxItem:
    """What the agent's ``send_file`` tool does (no message in flight: agent-initiated)."""
    answer: dict[str, Any] = await McpHandlers(ledger, config, {}).send_file(
        {"agent": "demo", "path": path, "caption": caption}
    )
    return await ledger.get_reply(answer["reply"]["id"])


async def test_an_image_goes_as_a_photo_a_text_as_a_document(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    (tmp_path / "work" / "chart.png").write_bytes(PNG)
    (tmp_path / "work" / "notes.txt").write_text("all green\n")
    channel = await start_channel()
    async with relay_for(ledger, channel, config):
        photo = await send_file(ledger, config, "chart.png", "the chart")
        document = await send_file(ledger, config, "notes.txt")
        assert (await settled(ledger, photo.id)).state is OutboxState.SENT
        assert (await settled(ledger, document.id)).state is OutboxState.SENT
    first, second = fake.uploads
    assert (first.method, first.name, first.data, first.caption) == (
        "sendPhoto",
        "chart.png",
        PNG,
        "the chart",
    )
    assert (second.method, second.name, second.data) == (
        "sendDocument",
        "notes.txt",
        b"all green\n",
    )
    assert second.caption is None and first.chat_id == CHAT
    assert (await ledger.get_reply(photo.id)).platform_message_id == str(first.message_id)
    assert fake.sent == []  # no text message besides the files


async def test_an_image_over_10_mb_goes_as_a_document(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    big = tmp_path / "work" / "huge.png"
    big.write_bytes(PNG + b"\0" * (10 * MB))
    channel = await start_channel()
    async with relay_for(ledger, channel, config):
        item = await send_file(ledger, config, "huge.png")
        assert (await settled(ledger, item.id)).state is OutboxState.SENT
    [upload] = fake.uploads
    assert upload.method == "sendDocument" and len(upload.data) == big.stat().st_size


async def test_a_photo_telegram_refuses_goes_as_a_document(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    (tmp_path / "work" / "strip.png").write_bytes(PNG)
    channel = await start_channel()
    fake.fail_next("photo_dimensions")
    async with relay_for(ledger, channel, config):
        item = await send_file(ledger, config, "strip.png")
        assert (await settled(ledger, item.id)).state is OutboxState.SENT
    assert [u.method for u in fake.uploads] == ["sendDocument"]


async def test_a_file_over_50_mb_fails_for_good_and_the_user_is_told(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    big = tmp_path / "work" / "dump.bin"
    with big.open("wb") as out:  # sparse: 50 MB + 1 byte on the size, nothing on the disk
        out.truncate(50 * MB + 1)
    channel = await start_channel()
    async with relay_for(ledger, channel, config):
        item = await send_file(ledger, config, "dump.bin")
        row = await settled(ledger, item.id)
        assert row.state is OutboxState.FAILED
        assert row.last_error == (
            f"permanent: file too big: dump.bin is {50 * MB + 1} bytes,"
            f" over telegram's {50 * MB}-byte limit"
        )
        await async_wait_until(told(fake), timeout=10, what="fallback text")
    assert fake.uploads == []
    [notice] = fake.sent
    assert "dump.bin (50.0 MB), but it is too big for telegram (limit 50.0 MB)" in notice.visible
    assert row.attempts == 1


async def test_a_file_gone_before_sending_fails_once_with_a_reason(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    path = tmp_path / "work" / "report.txt"
    path.write_text("soon gone")
    item = await send_file(ledger, config, "report.txt")  # queued while the relay is down
    path.unlink()
    channel = await start_channel()
    async with relay_for(ledger, channel, config):
        row = await settled(ledger, item.id)
        await async_wait_until(told(fake), timeout=10, what="fallback text")
    assert row.state is OutboxState.FAILED and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith(
        f"permanent: file gone: {path.resolve()} no longer exists"
    )
    assert "report.txt, but it was gone" in fake.sent[0].visible
    assert fake.uploads == []


async def test_a_symlink_swapped_in_after_the_check_is_refused(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("the owner's secret")
    path = tmp_path / "work" / "report.txt"
    path.write_text("fine")
    item = await send_file(ledger, config, "report.txt")  # send_file checked a real file
    path.unlink()
    path.symlink_to(secret)  # …then the agent points it elsewhere
    channel = await start_channel()
    async with relay_for(ledger, channel, config):
        row = await settled(ledger, item.id)
    assert row.state is OutboxState.FAILED
    assert row.last_error is not None and "outside the agent's directory" in row.last_error
    assert fake.uploads == []


@pytest.mark.parametrize("fault", ["stall", "reset"])
async def test_an_upload_whose_answer_was_lost_is_not_resent(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path, fault: str
) -> None:
    config = bridge_config(tmp_path)
    (tmp_path / "work" / "notes.txt").write_text("once")
    channel = await start_channel(request_timeout=0.5)
    fake.fail_next(fault)
    async with relay_for(ledger, channel, config):
        item = await send_file(ledger, config, "notes.txt")
        row = await settled(ledger, item.id)
        assert row.state is OutboxState.UNKNOWN
        # the relay goes on (another file arrives) and never offers the first one again
        (tmp_path / "work" / "next.txt").write_text("next")
        other = await send_file(ledger, config, "next.txt")
        assert (await settled(ledger, other.id)).state is OutboxState.SENT
    assert [u.name for u in fake.uploads] == ["notes.txt", "next.txt"]
    assert (await ledger.get_reply(item.id)).attempts == 1
    assert await ledger.claim_due_reply() is None


async def test_a_long_reply_goes_as_one_file(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    text = "Summary: all 412 tests pass.\n" + "\n".join(f"line {i} " + "x" * 80 for i in range(400))
    channel = await start_channel()
    async with relay_for(ledger, channel, config) as relay:
        assert relay.config.max_parts == 5
        item = await ledger.enqueue_reply(
            "telegram", str(CHAT), text, key="long-1", reply_to=f"{CHAT}:9"
        )
        assert (await settled(ledger, item.id)).state is OutboxState.SENT
    [upload] = fake.uploads
    assert (upload.method, upload.name, upload.reply_to) == ("sendDocument", "reply.md", 9)
    assert upload.data.decode() == text
    assert upload.caption == (
        f"Summary: all 412 tests pass.\n(the whole reply, {len(text)} characters, is in reply.md)"
    )
    assert fake.sent == []


async def test_a_reply_within_max_parts_is_still_chunked(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    text = "\n".join("y" * 1000 for _ in range(12))  # 3 parts of 4096
    channel = await start_channel(parse_mode="none")
    async with relay_for(ledger, channel, config):
        item = await ledger.enqueue_reply("telegram", str(CHAT), text, key="mid-1")
        assert (await settled(ledger, item.id)).state is OutboxState.SENT
    assert fake.uploads == [] and len(fake.sent) == 3


async def test_a_long_caption_follows_the_file_as_text(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    config = bridge_config(tmp_path)
    (tmp_path / "work" / "notes.txt").write_text("n")
    caption = "why: " + "because " * 200  # over Telegram's 1024-character caption
    channel = await start_channel(parse_mode="none")
    async with relay_for(ledger, channel, config):
        item = await send_file(ledger, config, "notes.txt", caption)
        assert (await settled(ledger, item.id)).state is OutboxState.SENT
    [upload] = fake.uploads
    assert upload.caption is None
    assert [s.text for s in fake.sent] == [caption]


async def test_a_long_reply_already_partly_sent_keeps_chunking(
    fake: FakeBotApi, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    """An earlier attempt (before a crash, or before max_parts was set) sent 2 parts: the
    retry sends the rest as messages, never the whole reply again as a file."""
    config = bridge_config(tmp_path)
    text = "\n".join(f"{i:04d} " + "z" * 995 for i in range(30))  # 8 parts of 4096
    item = await ledger.enqueue_reply("telegram", str(CHAT), text, key="long-2")
    await ledger.reserve_send(item.id)
    await ledger.mark_part_sent(item.id, 2, "501")
    await ledger.mark_retry(item.id, "429 after part 2", 0)
    channel = await start_channel(parse_mode="none")
    async with relay_for(ledger, channel, config):
        row = await settled(ledger, item.id)
    assert row.state is OutboxState.SENT and row.platform_message_id == "501"
    assert fake.uploads == []
    assert len(fake.sent) == 6 and fake.sent[-1].text.endswith("0029 " + "z" * 995)
    assert not any(s.text.startswith("0000 ") for s in fake.sent)
