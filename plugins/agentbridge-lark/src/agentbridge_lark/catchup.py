"""Reading back what the long connection did not bring: a chat's (or thread's) message list
since its cursor, and our own replies when a send's outcome is unknown.

Lark's ``GET /im/v1/messages`` lists a chat from a start time (whole seconds) or a whole
thread (``container_id_type=thread``, no time range), oldest first, 50 a page.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from agentbridge_lark.api import LarkApi
from agentbridge_lark.cursor import CursorStore
from agentbridge_lark.inbound import (
    LarkMessage,
    _text_of,
    as_dict,
    from_item,
    split_conversation,
)

#: a catch-up never reads more than this many pages of one container in one pass
MAX_PAGES = 200


async def pages(
    api: LarkApi, container_type: str, container_id: str, start_s: int
) -> AsyncIterator[dict[str, Any]]:
    """Every item of the list, oldest first."""
    token: str | None = None
    for _ in range(MAX_PAGES):
        items, token = await api.list_messages(container_type, container_id, start_s, token)
        for item in items:
            yield item
        if token is None:
            return


def _source(cursors: CursorStore, container: str) -> tuple[str, str, int] | None:
    """(container type, id, start seconds) to list ``container`` from, or None."""
    cursor = cursors.get(container)
    if cursor is None:
        return None
    chat, root = split_conversation(container)
    if root is None:
        return "chat", chat, cursor.last_ms // 1000
    if cursor.thread_id is None:
        return None  # no thread yet: its messages are still in the chat's own list
    return "thread", cursor.thread_id, 0


async def missed(
    api: LarkApi, cursors: CursorStore, container: str, bot_open_id: str | None
) -> AsyncIterator[LarkMessage]:
    """The messages of ``container`` after its cursor, oldest first."""
    source = _source(cursors, container)
    cursor = cursors.get(container)
    if source is None or cursor is None:
        return
    kind, ident, start = source
    async for item in pages(api, kind, ident, start):
        msg = from_item(item, bot_open_id, cursor.chat_type)
        if msg is None or msg.message_id == split_conversation(container)[1]:
            continue  # a deleted message, or the thread's root (read in the chat's list)
        home = container_of(msg)
        if cursors.seen(home, msg.create_time, msg.message_id):
            continue
        yield msg


def container_of(msg: LarkMessage) -> str:
    """The cursor a message advances: its thread's, or its chat's."""
    return f"{msg.chat_id}:{msg.root_id}" if msg.root_id else msg.chat_id


def _plain(text: str) -> str:
    return re.sub(r"[\s*_~`>#-]+", "", text)


async def find_own(
    api: LarkApi, container: str, thread_id: str | None, since_s: int, pieces: list[str]
) -> tuple[dict[int, str], bool]:
    """({piece index: message id} of our posts showing ``pieces``, read the list to its end)."""
    chat, root = split_conversation(container)
    kind, ident = ("chat", chat) if root is None or thread_id is None else ("thread", thread_id)
    wanted = {_plain(p): n for n, p in enumerate(pieces)}
    found: dict[int, str] = {}
    read = 0
    async for item in pages(api, kind, ident, since_s):
        read += 1
        sender = as_dict(item.get("sender"))
        if sender.get("sender_type") != "app":
            continue
        body = as_dict(item.get("body"))
        text = _plain(_text_of(str(item.get("msg_type") or ""), body.get("content")))
        if text in wanted:
            found.setdefault(wanted[text], str(item.get("message_id")))
    return found, read < MAX_PAGES * 50
