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
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, OutFile
from agentbridge.states import OutboxState
from agentbridge.supervisor.inbound_files import settle, stage_for
from agentbridge.testing import async_wait_until
from agentbridge.testing.relaying import running_relay, settled
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
    await start_channel(ingest=staged_ingest, max_attachment_bytes=5000, core_max_bytes=3000)
    huge = fake.attachment(DM, "huge.bin", b"x", size=9000)  # Discord says 9000 bytes
    first = await fake.post(DM, ALICE, "big one", attachments=[huge])
    assert "'huge.bin' is 9000 bytes, over the bridge's 3000 bytes" in await told(fake, first)
    big = fake.attachment(DM, "big.bin", b"y" * 4000)  # under ours, over the core's 3000
    second = await fake.post(DM, ALICE, "medium", attachments=[big])
    assert "'big.bin' is 4000 bytes, over the bridge's 3000 bytes" in await told(fake, second)
    assert fake.cdn_gets == []  # both refused before a byte was fetched
    liar = fake.attachment(DM, "liar.bin", b"y" * 3500, size=10)  # says 10, is 3500
    third = await fake.post(DM, ALICE, "small?", attachments=[liar])
    assert "'liar.bin' is over 3000 bytes" in await told(fake, third)
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
    """What ``send_file`` queues (agent-initiated: no message in flight)."""
    text = text_for(path, caption)
    key = f"{FILE_KEY_PREFIX}{time.monotonic_ns()}"
    return await ledger.enqueue_reply("discord", str(DM), text, key=key)


def work(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "work").mkdir(exist_ok=True)
    return {"demo": tmp_path / "work"}


async def test_an_agents_file_is_uploaded_with_its_caption_through_the_relay(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel()
    assert channel.limits.max_file_bytes == 10 * 1024 * 1024  # Discord's default for bots
    cwds = work(tmp_path)
    path = cwds["demo"] / "report.md"
    path.write_bytes(b"# results\n" * 50)
    bare = cwds["demo"] / "plain.bin"
    bare.write_bytes(b"\x00\x01")
    async with running_relay(ledger, channel, cwds=cwds):
        first = await file_item(ledger, path, "the report")
        second = await file_item(ledger, bare)
        assert (await settled(ledger, first.id)).state is OutboxState.SENT
        row = await settled(ledger, second.id)
    sent, plain = fake.sent
    assert sent.files == [("report.md", path.read_bytes())] and sent.content == "the report"
    assert (await ledger.get_reply(first.id)).platform_message_id == str(sent.message_id)
    assert sent.nonce and plain.files == [("plain.bin", b"\x00\x01")] and plain.content == ""
    assert row.state is OutboxState.SENT


async def test_a_long_caption_follows_the_file_as_messages(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel()
    cwds = work(tmp_path)
    (cwds["demo"] / "a.txt").write_text("a")
    caption = "\n".join(f"line {i} " + "w" * 90 for i in range(30))  # ~2,900 characters
    async with running_relay(ledger, channel, cwds=cwds):
        item = await file_item(ledger, cwds["demo"] / "a.txt", caption)
        assert (await settled(ledger, item.id)).state is OutboxState.SENT
    upload, rest = fake.sent
    assert upload.files == [("a.txt", b"a")] and rest.files == []
    assert upload.content + rest.content == caption and len(upload.content) <= 2000


async def test_too_large_files_are_refused_by_the_relay_and_discords_413_is_permanent(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel(max_upload_bytes=100)
    assert channel.limits.max_file_bytes == 100
    cwds = work(tmp_path)
    path = cwds["demo"] / "big.log"
    path.write_bytes(b"z" * 3000)
    async with running_relay(ledger, channel, cwds=cwds):
        item = await file_item(ledger, path)
        row = await settled(ledger, item.id)

        async def told_the_user() -> bool:
            return len(fake.sent) == 1

        await async_wait_until(told_the_user, timeout=10, what="the refusal text")
    assert row.state is OutboxState.FAILED and row.last_error == (
        "permanent: file too big: big.log is 3000 bytes, over discord's 100-byte limit"
    )
    [notice] = fake.sent
    assert notice.files == [] and "big.log (2.9 KB), but it is too big" in notice.content
    roomy = await start_channel(max_upload_bytes=10 * 1024 * 1024)
    fake.upload_limit = 1000  # Discord's own 413 (a server limit we did not know)
    with pytest.raises(DeliveryError) as caught:
        await roomy.deliver_file(item, OutFile("big.log", b"z" * 3000))
    assert caught.value.error_class is ErrorClass.PERMANENT and "40005" in str(caught.value)


async def test_an_upload_in_doubt_is_reconciled_by_name_not_resent(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel(request_timeout=1)
    cwds = work(tmp_path)
    (cwds["demo"] / "out.txt").write_text("data")
    fake.fail_next, fake.hang_seconds = ["timeout"], 3.0
    async with running_relay(ledger, channel, cwds=cwds):
        item = await file_item(ledger, cwds["demo"] / "out.txt", "the data")
        row = await settled(ledger, item.id, (OutboxState.SENT, OutboxState.FAILED))
    assert row.state is OutboxState.SENT and len(fake.sent) == 1
    assert row.platform_message_id == str(fake.sent[0].message_id) and row.attempts == 1
    other = cwds["demo"] / "other.txt"
    other.write_text("never sent")
    never = await file_item(ledger, other)
    assert (await channel.reconcile_file(never, OutFile("other.txt", b""))).landed is False


async def test_an_upload_that_landed_without_its_caption_tail_sends_only_the_tail(
    fake: FakeDiscord, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    """The file's message is there, the next caption part never went: the new attempt sends
    that part only (the upload is not repeated)."""
    channel = await start_channel()
    cwds = work(tmp_path)
    (cwds["demo"] / "b.txt").write_text("b")
    caption = "\n".join(f"row {i} " + "v" * 90 for i in range(30))
    fake.fail_next = ["reset"]  # the upload is created, its answer lost
    async with running_relay(ledger, channel, cwds=cwds):
        item = await file_item(ledger, cwds["demo"] / "b.txt", caption)
        row = await settled(ledger, item.id, (OutboxState.SENT, OutboxState.FAILED))
    assert row.state is OutboxState.SENT
    assert [s.files for s in fake.sent] == [[("b.txt", b"b")], []]
    assert "".join(s.content for s in fake.sent) == caption
    assert row.platform_message_id == str(fake.sent[0].message_id)
    details = [e.detail for e in await ledger.events_since(0) if e.outbox_id == item.id]
    assert row.attempts == 2 and any("outcome unknown" in d for d in details), details
