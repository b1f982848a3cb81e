"""Files in and out over the real SDK against the fake Lark: a user's picture or file is
fetched through the message-resource API and handed to the ingest (a picture without text is
a message); a reply file is uploaded (images/files) and posted by key, classified like text
sends; progress posts one status and updates it in place."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from agentbridge.ledger.sqlite import IngestResult, Ledger
from agentbridge.models import Message
from agentbridge.plugin.protocols import (
    DeliveryError,
    EditingChannel,
    ErrorClass,
    FileChannel,
    OutFile,
)
from agentbridge.states import MessageState
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM

from agentbridge_lark.testing import FakeLark

PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 300


def keeping(ledger: Ledger, got: list[tuple[str, list[tuple[str, str, bytes]]]]) -> Any:
    """The routed ingest, keeping what each attachment held when the ingest ran."""

    async def ingest(conversation: str, sender: str, text: str, key: str | None = None,
                     meta: dict[str, Any] | None = None, priority: int = 0,
                     attachments: Any = ()) -> IngestResult:  # fmt: skip
        files = [(a.name, a.media_type, Path(a.path).read_bytes()) for a in attachments]  # noqa: ASYNC240
        got.append((text, files))
        return await ledger.ingest("lark", conversation, sender, text, key=key, agent="demo",
                                   meta=meta)  # fmt: skip

    return ingest


async def test_picture_without_text_and_a_file_are_fetched_and_ingested(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    got: list[tuple[str, list[tuple[str, str, bytes]]]] = []
    await start_channel(ingest=keeping(ledger, got))
    image_key = fake.add_resource(PNG, "image")
    pic = await fake.user_message(DM, ALICE, "", msg_type="image", content={"image_key": image_key})
    doc_key = fake.add_resource(b"col1,col2\n1,2\n")
    named = {"file_key": doc_key, "file_name": "data.csv"}
    doc = await fake.user_message(DM, ALICE, "", msg_type="file", content=named)

    async def both() -> bool:
        return len(got) == 2

    await async_wait_until(both, timeout=15, what="two ingests with files")
    assert got[0] == ("", [(f"image-{pic}.png", "image/png", PNG)])  # a message, not dropped
    assert got[1] == ("", [("data.csv", "application/octet-stream", b"col1,col2\n1,2\n")])
    assert fake.downloads == [(pic, image_key, "image"), (doc, doc_key, "file")]
    assert fake.posted == []  # no "not forwarded" notice
    assert len(await ledger.list_messages(channel="lark")) == 2


async def test_a_file_lark_will_not_serve_is_refused_with_a_notice(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    await start_channel()
    await fake.user_message(DM, ALICE, "see", msg_type="file",
                            content={"file_key": "file_v2_gone", "file_name": "x.bin"})  # fmt: skip

    async def told() -> bool:
        return len(fake.posted) == 1

    await async_wait_until(told, timeout=15, what="the refusal notice")
    assert "could not be fetched" in fake.post_texts()[0] and "234003" in fake.post_texts()[0]
    assert await ledger.list_messages(channel="lark") == []


async def test_an_image_is_uploaded_then_posted_by_key_with_its_caption(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    assert isinstance(channel, FileChannel) and channel.limits.max_file_bytes > 0
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, "(file)", key="agent-file:1")
    out = OutFile("chart.png", PNG, "image/png", "the **chart**")
    fake.upload_faults.append("500")  # Lark failed the upload: no chat message came of it
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver_file(item, out)
    assert caught.value.error_class is ErrorClass.TRANSIENT and fake.posted == []
    first = await channel.deliver_file(item, out)
    [upload] = fake.uploads
    assert (
        upload["kind"] == "image"
        and upload["image_type"] == "message"
        and upload["size"] == len(PNG)
    )
    image, caption = fake.posted
    assert first == image["message_id"] and image["msg_type"] == "image" and image["uuid"]
    assert json.loads(image["content"]) == {"image_key": upload["key"]}
    assert fake.resources[upload["key"]] == PNG
    assert caption["msg_type"] == "post" and fake.post_texts()[1] == "the **chart**"


async def test_a_document_goes_as_a_file_and_a_lost_answer_is_unknown(
    fake: FakeLark, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel()
    fake.chats[DM] = "p2p"
    item = await ledger.enqueue_reply("lark", DM, "(file)", key="agent-file:2")
    out = OutFile("report.pdf", b"%PDF-1.4 body", "application/pdf")
    fake.stall_seconds = 4
    fake.faults.append("stall")  # the file message is posted, then the answer never comes
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver_file(item, out)
    assert caught.value.error_class is ErrorClass.UNKNOWN
    [upload] = fake.uploads
    assert upload["kind"] == "file" and upload["file_type"] == "pdf"
    assert upload["file_name"] == "report.pdf"
    [posted] = fake.posted
    assert (
        posted["msg_type"] == "file" and json.loads(posted["content"])["file_key"] == upload["key"]
    )


def _message() -> Message:
    now = time.time()
    return Message(
        id=5, channel="lark", conversation=DM, sender=ALICE, platform_id="om_1", text="go",
        agent="demo", priority=0, state=MessageState.SUBMITTED, attempt=1, fence=1,
        lease_owner=None, lease_expires_at=None, heartbeat_at=None, reply=None, reason=None,
        meta={}, created_at=now, updated_at=now,
    )  # fmt: skip


async def test_progress_posts_one_status_and_updates_it(fake: FakeLark, start_channel) -> None:
    channel = await start_channel()
    assert isinstance(channel, EditingChannel)
    fake.chats[DM] = "p2p"
    status = await channel.edit_message(_message(), "working (1 s, 1 step)…", None)
    assert (
        await channel.edit_message(_message(), "working (6 s, 3 steps): step 3/6", status) == status
    )
    [posted] = fake.posted
    assert posted["message_id"] == status and fake.send_requests == 1
    assert [(mid, fake.post_text(c)) for _, mid, c in fake.edits] == [
        (status, "working (6 s, 3 steps): step 3/6")
    ]
    with pytest.raises(Exception, match="230071"):  # not the bot's message: raised, not retried
        await channel.edit_message(_message(), "working…", "om_someone_elses")
