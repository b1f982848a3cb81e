"""Which files of an update are fetched: the largest photo size, documents, voice notes."""

from __future__ import annotations

from agentbridge_telegram.files import FileRef, file_refs
from agentbridge_telegram.inbound import parse_update


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
