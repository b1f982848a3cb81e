"""Which files of an update are fetched: the largest photo size, documents, voice notes."""

from __future__ import annotations

from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT

from agentbridge_telegram.files import FileRef, file_refs
from agentbridge_telegram.inbound import parse_update
from agentbridge_telegram.testing import FakeBotApi


def test_largest_photo_size_document_and_voice() -> None:
    msg = {
        "message_id": 7,
        "photo": [
            {"file_id": "s", "width": 90, "height": 90, "file_size": 900},
            {"file_id": "l", "width": 1280, "height": 960, "file_size": 90_000},
            {"file_id": "m", "width": 320, "height": 240, "file_size": 9_000},
        ],
        "document": {"file_id": "d", "file_name": "r.pdf", "mime_type": "application/pdf"},
        "voice": {"file_id": "v", "duration": 3, "file_size": 4000},
    }
    assert file_refs(msg) == (
        FileRef("l", "photo-7.jpg", "image/jpeg", 90_000),
        FileRef("d", "r.pdf", "application/pdf", None),
        FileRef("v", "voice-7.ogg", "audio/ogg", 4000),
    )


def test_malformed_file_parts_are_left_out_and_a_bare_photo_is_a_message() -> None:
    assert file_refs({"message_id": 1, "photo": "nope", "document": {"file_id": 5}}) == ()
    update = {
        "update_id": 3,
        "message": {
            "message_id": 2,
            "chat": {"id": 1, "type": "private"},
            "from": {"id": 9},
            "photo": [{"file_id": "p"}],
        },
    }
    parsed = parse_update(update)
    assert parsed is not None and parsed.text is None
    assert parsed.files == (FileRef("p", "photo-2.jpg", "image/jpeg", None),)


async def test_the_cores_max_bytes_refuses_before_and_while_downloading(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    """``ctx.max_attachment_bytes`` (the core's ``[attachments] max_bytes``) caps the fetch:
    a file Telegram declares larger is never fetched; one that lies stops at the cap."""
    await start_channel(core_max_bytes=1000)
    big = {"file_id": fake.add_file(b"x" * 5000), "file_name": "big.bin", "file_size": 5000}
    first = fake.add_message(chat_id=CHAT, user_id=ALICE, extra={"document": big})
    liar = {"file_id": fake.add_file(b"y" * 3000), "file_name": "liar.bin", "file_size": 10}
    second = fake.add_message(chat_id=CHAT, user_id=ALICE, extra={"document": liar})

    async def both_told() -> bool:
        return sum(s.text.startswith("Not delivered") for s in fake.sent) >= 2

    await async_wait_until(both_told, timeout=10, what="two refusals")
    refusals = [s.text for s in fake.sent if s.text.startswith("Not delivered")]
    assert "'big.bin' is 0.0 MB; the limit is 0.0 MB per file." in refusals[0]
    assert "'liar.bin' is over the bridge's limit" in refusals[1]
    assert fake.downloads == [f"documents/{liar['file_id']}"]  # big.bin: not a byte fetched
    assert fake.confirmed_offset > second["update_id"] > first["update_id"]  # refusals acked
    assert await ledger.list_messages(channel="telegram") == []
