"""Replies out on Lark: text parts as posts, files as image/file messages, progress edits.

Every message carries a stable ``uuid``: Lark posts at most one message per uuid within an
hour, so a retry of a piece Lark already has cannot post it twice. A file goes up first
(``im/v1/images`` or ``im/v1/files``), then a message names its key: a failed upload proves no
chat message came of it (transient, unless Lark says the file can never go), while the
message request itself is classified like a text send (a lost answer is ``unknown``). The
caption, which image and file messages cannot carry, follows as a post.
"""

from __future__ import annotations

import asyncio
import json
import logging

from agentbridge.delivery.actions import ReplyAction
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, OutFile

from agentbridge_lark.api import LarkApi
from agentbridge_lark.buttons import card_for
from agentbridge_lark.cursor import CursorStore
from agentbridge_lark.inbound import split_conversation
from agentbridge_lark.outbound import UuidBook, fit, to_delivery_error, to_post, uuid_for
from agentbridge_lark.resources import IMAGE_MAX, IMAGE_TYPES, upload_file, upload_image
from agentbridge_lark.settings import LarkSettings

log = logging.getLogger(__name__)

EMPTY_REPLY = "(the agent's reply was empty)"


class Sender:
    """The sending half of one started channel."""

    def __init__(self, api: LarkApi, settings: LarkSettings, cursors: CursorStore) -> None:
        self.api = api
        self.settings = settings
        self.cursors = cursors
        self._parts: dict[str, list[str]] = {}  # part key → ids of the pieces already sent
        self._uploaded: dict[str, tuple[str, str]] = {}  # file key → (msg_type, content)
        self._uuids = UuidBook()

    def _chat(self, item: OutboxItem) -> tuple[str, str | None]:
        chat, root = split_conversation(item.conversation)
        if not chat.startswith("oc_"):
            raise DeliveryError(f"lark: not a chat id: {item.conversation!r}", ErrorClass.PERMANENT)
        return chat, root

    async def _post(self, item: OutboxItem, number: int, kind: str, content: str, seed: str) -> str:
        chat, root = self._chat(item)
        uuid = self._uuids.uuid(item.idem_key, item.parts_sent, number, seed)
        message_id, thread_id = await asyncio.wait_for(
            self.api.send(chat, root, kind, content, uuid), self.settings.request_timeout + 5
        )
        if root is not None and thread_id:
            self.cursors.thread_made(item.conversation, thread_id)
        self._uuids.posted(item.idem_key, item.parts_sent, number, seed)
        return message_id

    async def deliver(self, item: OutboxItem, actions: tuple[ReplyAction, ...]) -> str | None:
        """Post one relay part (as a ``post``, or a card with ``actions``); the first id."""
        self._chat(item)
        key = f"{item.idem_key}:{item.parts_sent}"
        sent = self._parts.setdefault(key, [])
        pieces = fit(item.text or EMPTY_REPLY)
        actions = actions if len(pieces) == 1 else ()
        try:
            for number, piece in enumerate(pieces):
                if number < len(sent):
                    continue
                kind, content = (
                    ("interactive", card_for(piece, actions, item.conversation))
                    if actions
                    else ("post", to_post(piece))
                )
                sent.append(await self._post(item, number, kind, content, piece))
        except Exception as exc:
            raise self._failed(item, key, exc) from None
        self._parts.pop(key, None)
        return sent[0] if sent else None

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload ``file`` (an image when Lark can show it, else a file), post a message
        naming it, then the caption as posts; the file message's id."""
        self._chat(item)
        key = f"{item.idem_key}:file"
        sent = self._parts.setdefault(key, [])  # [file message id, caption piece ids…]
        try:
            if not sent:
                kind, content = await self._upload(key, file)
                sent.append(await self._post(item, 0, kind, content, f"file:{file.name}"))
            for number, piece in enumerate(fit(file.caption) if file.caption else []):
                if number + 1 < len(sent):
                    continue
                sent.append(await self._post(item, number + 1, "post", to_post(piece), piece))
        except Exception as exc:
            raise self._failed(item, key, exc) from None
        self._parts.pop(key, None)
        self._uploaded.pop(key, None)
        return sent[0]

    async def _upload(self, key: str, file: OutFile) -> tuple[str, str]:
        """The message type and content naming the uploaded file (uploaded once per row)."""
        found = self._uploaded.get(key)
        if found is not None:
            return found
        try:
            if file.media_type in IMAGE_TYPES and len(file.data) <= IMAGE_MAX:
                image_key = await upload_image(self.api, file.data)
                found = ("image", json.dumps({"image_key": image_key}))
            else:
                file_key = await upload_file(self.api, file.data, file.name, file.media_type)
                found = ("file", json.dumps({"file_key": file_key}))
        except Exception as exc:
            error = to_delivery_error(exc)
            if error.error_class is ErrorClass.PERMANENT:
                raise error from None
            # no chat message comes of an upload: trying again cannot post twice
            raise DeliveryError(str(error), ErrorClass.TRANSIENT, error.retry_after) from None
        self._uploaded[key] = found
        return found

    def _failed(self, item: OutboxItem, key: str, exc: Exception) -> DeliveryError:
        """What the relay gets; progress is kept for a retry unless the failure is final."""
        error = exc if isinstance(exc, DeliveryError) else to_delivery_error(exc)
        if error.error_class is ErrorClass.PERMANENT:
            self._parts.pop(key, None)
            self._uploaded.pop(key, None)
        log.warning(
            "lark: reply %s to %s not delivered (%s): %s",
            item.id,
            item.conversation,
            error.error_class,
            error,
        )
        return error

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Progress: post the status into the sender's chat (or thread), then replace its
        text in place (``PUT im/v1/messages/:id``); best effort, never retried."""
        content = to_post(text)
        if status_id is not None:
            await asyncio.wait_for(
                self.api.update_message(status_id, "post", content),
                self.settings.request_timeout + 5,
            )
            return status_id
        chat, root = split_conversation(message.conversation)
        uuid = uuid_for("progress", message.id, message.attempt, message.conversation)
        message_id, _ = await asyncio.wait_for(
            self.api.send(chat, root, "post", content, uuid), self.settings.request_timeout + 5
        )
        return message_id
