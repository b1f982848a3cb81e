"""Files both ways over the real discord.py and the fake Discord: attachments in through the
core's staging (under the agent's cwd, before the cursor moves), agents' files out as uploads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from agentbridge.agent import inbox
from agentbridge.config import parse_config
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import DeliveryError, ErrorClass
from agentbridge.supervisor.inbound_files import settle, stage_for
from agentbridge.testing import async_wait_until
from discord_helpers import ALICE, DM, GUILD, TEXT

from agentbridge_discord.testing import BOT_ID, FakeDiscord


@pytest.fixture
def core(tmp_path: Path) -> Any:
    return parse_config(
        {"state_dir": str(tmp_path / "s"), "attachments": {"max_bytes": 1000},
         "agents": {"demo": {"runtime": "demo", "cwd": str(tmp_path / "work")}}}
    )  # fmt: skip


@pytest.fixture
def staged_ingest(ledger: Ledger, core: Any) -> Any:
    """The bridge's file path around the commit (supervisor/inbound_files.py), agent demo."""

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        attachments: Any = (),
        **kw: Any,
    ) -> Any:
        staged, meta = stage_for(core, "demo", attachments, meta)
        result = await ledger.ingest(
            "discord", conversation, sender, text, key=key, agent="demo", meta=meta
        )
        settle(staged, result)
        return result  # fmt: skip

    return ingest


async def rows(ledger: Ledger) -> list[Any]:
    return await ledger.list_messages(channel="discord")


async def wait_rows(ledger: Ledger, count: int) -> list[Any]:
    async def enough() -> bool:
        return len(await rows(ledger)) >= count

    await async_wait_until(enough, timeout=10, what=f"{count} row(s)")
    return await rows(ledger)


def placed(tmp_path: Path, row: Any, name: str) -> bytes:
    """The bytes the core placed for the message under the agent's cwd."""
    return (tmp_path / "work" / inbox.RELATIVE_DIR / str(row.id) / name).read_bytes()


async def told(fake: FakeDiscord, reply_to: int) -> str:
    async def there() -> bool:
        return any(s.reply_to == reply_to for s in fake.sent)

    await async_wait_until(there, timeout=10, what="a line to the sender")
    return next(s.content for s in fake.sent if s.reply_to == reply_to)


# ------------------------------------------------------------------ in


async def test_a_file_without_text_is_a_message_with_its_file_in_the_cwd(
    fake: FakeDiscord, ledger: Ledger, start_channel, staged_ingest, tmp_path: Path
) -> None:
    await start_channel(ingest=staged_ingest)
    files = [fake.attachment(TEXT, "notes.txt", b"hello file", content_type="text/plain")]
    mid = await fake.post(TEXT, ALICE, f"<@{BOT_ID}>", guild_id=GUILD, mentions=(BOT_ID,),
                          attachments=files)  # fmt: skip
    [row] = await wait_rows(ledger, 1)
    assert row.text == "" and row.platform_id == str(mid)
    [stored] = row.meta["attachments"]["files"]
    assert (stored["name"], stored["size"], stored["media_type"]) == ("notes.txt", 10,
                                                                      "text/plain")  # fmt: skip
    assert placed(tmp_path, row, "notes.txt") == b"hello file"
    assert "http" not in str(row.meta)  # signed CDN links stay out of the ledger


async def test_sizes_are_capped_before_and_after_the_download(
    fake: FakeDiscord, ledger: Ledger, start_channel, staged_ingest
) -> None:
    await start_channel(ingest=staged_ingest, max_attachment_bytes=5000)
    huge = fake.attachment(DM, "huge.bin", b"x", size=9000)  # Discord says 9000 bytes
    first = await fake.post(DM, ALICE, "big one", attachments=[huge])
    assert "over the bridge's" in await told(fake, first)
    assert fake.cdn_gets == []  # refused before a byte was fetched
    big = fake.attachment(DM, "big.bin", b"y" * 2000)  # under ours, over the core's 1000
    second = await fake.post(DM, ALICE, "medium", attachments=[big])
    assert "big.bin" in await told(fake, second)
    assert await rows(ledger) == []
    await fake.post(DM, ALICE, "after them")  # the cursor moved on: refusals are acked
    [row] = await wait_rows(ledger, 1)
    assert row.text == "after them"


async def test_a_cdn_outage_holds_the_cursor_a_gone_file_is_refused(
    fake: FakeDiscord, ledger: Ledger, start_channel, staged_ingest
) -> None:
    channel = await start_channel(ingest=staged_ingest)
    gone = fake.attachment(DM, "gone.txt", b"old")
    fake.cdn_status[int(gone["id"])] = 404
    refused = await fake.post(DM, ALICE, "expired", attachments=[gone])
    assert "would not serve 'gone.txt' (HTTP 404)" in await told(fake, refused)
    flaky = fake.attachment(DM, "later.txt", b"patience")
    fake.cdn_status[int(flaky["id"])] = 503
    await fake.post(DM, ALICE, "retry me", attachments=[flaky])

    async def held() -> bool:
        return DM in channel.status()["held"]

    await async_wait_until(held, timeout=10, what="the channel held")
    assert await rows(ledger) == []
    del fake.cdn_status[int(flaky["id"])]
    [row] = await wait_rows(ledger, 1)
    assert row.text == "retry me" and row.meta["attachments"]["files"][0]["size"] == 8


async def test_files_sent_while_down_come_in_with_the_catch_up(
    fake: FakeDiscord, ledger: Ledger, start_channel, staged_ingest, tmp_path: Path
) -> None:
    channel = await start_channel(ingest=staged_ingest)
    await fake.post(DM, ALICE, "seed")
    await wait_rows(ledger, 1)
    await channel.stop()
    fake.message(DM, ALICE, "", attachments=[fake.attachment(DM, "a.txt", b"while down")])
    await start_channel(ingest=staged_ingest)
    _, row = await wait_rows(ledger, 2)
    assert placed(tmp_path, row, "a.txt") == b"while down"


# ------------------------------------------------------------------ out


def text_for(path: Path, caption: str) -> str:
    return file_text(path, path.stat().st_size if path.exists() else 0, caption)


async def file_item(ledger: Ledger, path: Path, caption: str = "") -> Any:
    text = text_for(path, caption)
    key = f"{FILE_KEY_PREFIX}{time.monotonic_ns()}"
    return await ledger.enqueue_reply("discord", str(DM), text, key=key)


async def test_an_agents_file_is_uploaded_with_its_caption(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel()
    path = tmp_path / "report.md"
    path.write_bytes(b"# results\n" * 50)
    first = await channel.deliver(await file_item(ledger, path, "the report"))
    [sent] = fake.sent
    assert sent.files == [("report.md", path.read_bytes())] and sent.content == "the report"
    assert first == str(sent.message_id) and sent.nonce
    bare = tmp_path / "plain.bin"
    bare.write_bytes(b"\x00\x01")
    await channel.deliver(await file_item(ledger, bare))
    assert fake.sent[1].files == [("plain.bin", b"\x00\x01")] and fake.sent[1].content == ""


async def test_too_large_and_missing_files_are_permanent_with_the_reason(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel(max_upload_bytes=100)
    path = tmp_path / "big.log"
    path.write_bytes(b"z" * 3 * 1024 * 1024)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(await file_item(ledger, path))
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert "'big.log' is 3.0 MB, over Discord's 100 bytes upload limit" in str(caught.value)
    missing = await file_item(ledger, tmp_path / "nope.txt")
    with pytest.raises(DeliveryError, match=r"cannot send 'nope\.txt'") as caught:
        await channel.deliver(missing)
    assert caught.value.error_class is ErrorClass.PERMANENT and fake.sent == []
    roomy = await start_channel(max_upload_bytes=10 * 1024 * 1024)
    fake.upload_limit = 1024 * 1024  # Discord's own 413 (a server limit we did not know)
    with pytest.raises(DeliveryError) as caught:
        await roomy.deliver(await file_item(ledger, path))
    assert caught.value.error_class is ErrorClass.PERMANENT and "40005" in str(caught.value)


async def test_an_upload_in_doubt_is_found_by_reconcile(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel(request_timeout=1)
    path = tmp_path / "out.txt"
    path.write_text("data")
    fake.fail_next, fake.hang_seconds = ["timeout"], 3.0
    item = await file_item(ledger, path)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    assert caught.value.error_class is ErrorClass.UNKNOWN
    found = await channel.reconcile(item)
    assert found.landed is True and found.platform_message_id == str(fake.sent[0].message_id)
    other = tmp_path / "other.txt"
    other.write_text("never sent")
    assert (await channel.reconcile(await file_item(ledger, other))).landed is False
