"""Lark messages (live ``im.message.receive_v1`` events and message-list items) → what the
ledger stores, and whether they are for us.

The idempotency key is the Lark ``message_id`` (``om_…``): the same whether the message
arrives as an event, a redelivered event (same ``event_id``) or a catch-up list item.
``event_id`` is kept in ``meta``.

Conversation: a chat is its ``chat_id``; a thread is ``"<chat_id>:<root_id>"`` (the root
message's id is known from the first message on, the ``thread_id`` only once Lark made one);
a top-level @mention in a group opens a thread under itself (``reply_in_thread``).

Parsing never raises: a message we cannot read would otherwise hold its chat's cursor back.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any

from agentbridge_lark.settings import LarkSettings


class Verdict(enum.StrEnum):
    """What the channel does with one Lark message."""

    INGEST = "ingest"
    IGNORE = "ignore"  # not for the bot: its own or another app's post, talk among humans
    REFUSE = "refuse"  # addressed to the bot by someone the allowlists do not admit
    EMPTY = "empty"  # an allowed sender, but nothing we can forward (a sticker, a card…)


@dataclass(frozen=True)
class LarkFile:
    """One file of a message, as Lark names it (fetched through the message-resource API)."""

    key: str  # image_key or file_key
    kind: str  # the resource ``type``: "image" or "file"
    name: str
    media_type: str


@dataclass(frozen=True)
class LarkMessage:
    """One Lark message, reduced."""

    message_id: str
    chat_id: str
    chat_type: str  # "p2p" or "group"
    root_id: str | None
    thread_id: str | None
    open_id: str | None
    user_id: str | None
    tenant: str | None
    sender_type: str  # "user" or "app"
    text: str
    mentioned: bool
    mentions_anyone: bool  # any @mention at all (decides nothing while the bot id is unknown)
    create_time: int  # ms since the epoch
    meta: dict[str, Any] = field(default_factory=dict)
    files: tuple[LarkFile, ...] = ()  # image, file, video, audio, a post's pictures

    @property
    def key(self) -> str:
        """The ingest idempotency key (see the module doc)."""
        return self.message_id

    def conversation(self, reply_in_thread: bool) -> str:
        """chat → chat_id; thread → chat_id:root_id; a group mention → its own thread."""
        if self.root_id:
            return f"{self.chat_id}:{self.root_id}"
        if self.chat_type != "p2p" and reply_in_thread:
            return f"{self.chat_id}:{self.message_id}"
        return self.chat_id


def _text_of(message_type: str, content: Any) -> str:
    """The words of a text or post message; "" for everything else."""
    try:
        body = json.loads(content) if isinstance(content, str) else {}
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if message_type == "text":
        return str(body.get("text") or "")
    if message_type == "interactive":  # a card: its markdown/text elements, in order
        return "\n".join(_strings(body.get("elements")))
    if message_type == "post":
        post = body
        if "content" not in post:  # a localised post: {"zh_cn": {...}}
            post = next((v for v in body.values() if isinstance(v, dict)), {})
        lines = [str(post.get("title") or "")] if post.get("title") else []
        for paragraph in post.get("content") or []:
            words = []
            for node in paragraph if isinstance(paragraph, list) else []:
                if isinstance(node, dict) and node.get("tag") in ("text", "md", "a"):
                    words.append(str(node.get("text") or ""))
                elif isinstance(node, dict) and node.get("tag") == "at":
                    words.append(f"@{node.get('user_name') or node.get('user_id') or ''}")
            lines.append("".join(words))
        return "\n".join(lines)
    return ""


def _files_of(message_type: str, content: Any, message_id: str) -> tuple[LarkFile, ...]:
    """The files of an image, file, media or audio message, or a post's pictures/videos."""
    try:
        body = json.loads(content) if isinstance(content, str) else {}
    except ValueError:
        return ()
    if not isinstance(body, dict):
        return ()
    found: list[LarkFile] = []

    def add(key: Any, kind: str, name: Any, default: str, media: str) -> None:
        if isinstance(key, str) and key:
            number = len(found) + 1
            fallback = (
                f"{default}-{message_id}-{number}" if number > 1 else f"{default}-{message_id}"
            )
            found.append(LarkFile(key, kind, name if isinstance(name, str) and name else fallback,
                                  media))  # fmt: skip

    if message_type == "image":
        add(body.get("image_key"), "image", None, "image", "image/*")
    elif message_type == "file":
        add(body.get("file_key"), "file", body.get("file_name"), "file", "application/octet-stream")
    elif message_type == "media":
        add(body.get("file_key"), "file", body.get("file_name"), "video", "video/mp4")
    elif message_type == "audio":
        add(body.get("file_key"), "file", None, "audio", "audio/opus")
    elif message_type == "post":
        post = (
            body
            if "content" in body
            else next((v for v in body.values() if isinstance(v, dict)), {})
        )
        for paragraph in post.get("content") or []:
            for node in paragraph if isinstance(paragraph, list) else []:
                if isinstance(node, dict) and node.get("tag") == "img":
                    add(node.get("image_key"), "image", None, "image", "image/*")
                elif isinstance(node, dict) and node.get("tag") == "media":
                    add(node.get("file_key"), "file", node.get("file_name"), "video", "video/mp4")
    return tuple(found)


def _strings(node: Any) -> list[str]:
    """The ``content``/``text`` strings of a card's elements (any nesting)."""
    if isinstance(node, list):
        return [s for child in node for s in _strings(child)]
    if not isinstance(node, dict) or node.get("tag") == "action":
        return []
    for name in ("content", "text"):
        if isinstance(node.get(name), str):
            return [node[name]]
    return [s for child in node.values() for s in _strings(child)]


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (payloads are not trusted)."""
    return value if isinstance(value, dict) else {}


def _clean(text: str) -> str:
    """A str SQLite can store: lone surrogates (valid JSON, invalid UTF-8) become '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _mentions(raw: Any, bot_open_id: str | None) -> tuple[bool, list[tuple[str, str]]]:
    """(is the bot mentioned, [(placeholder key, display)]) from event or list mentions."""
    mentioned = False
    keys: list[tuple[str, str]] = []
    for m in raw if isinstance(raw, list) else []:
        if not isinstance(m, dict):
            continue
        ident = m.get("id")
        open_id = ident.get("open_id") if isinstance(ident, dict) else ident
        is_bot = bot_open_id is not None and open_id == bot_open_id
        mentioned = mentioned or is_bot
        if isinstance(m.get("key"), str):
            keys.append((m["key"], "" if is_bot else f"@{m.get('name') or ''}"))
    return mentioned, keys


def _build(
    message: dict[str, Any],
    sender: dict[str, Any],
    bot_open_id: str | None,
    event_id: str | None,
    chat_type: str | None,
) -> LarkMessage | None:
    message_id, chat_id = message.get("message_id"), message.get("chat_id")
    if not isinstance(message_id, str) or not isinstance(chat_id, str):
        return None
    message_type = str(message.get("message_type") or message.get("msg_type") or "")
    content = message.get("content")
    if content is None:
        content = as_dict(message.get("body")).get("content")
    mentioned, keys = _mentions(message.get("mentions"), bot_open_id)
    text = _text_of(message_type, content)
    for key, display in keys:
        text = text.replace(key, display)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    ids = as_dict(sender.get("sender_id"))
    open_id = ids.get("open_id") or (
        sender.get("id") if sender.get("id_type") == "open_id" else None
    )
    root = message.get("root_id") or None
    thread = message.get("thread_id") or None
    kind = str(chat_type or message.get("chat_type") or "group")
    meta: dict[str, Any] = {"message_id": message_id, "chat_id": chat_id, "chat_type": kind}
    for name, value in (("event_id", event_id), ("root_id", root), ("thread_id", thread)):
        if value:
            meta[name] = value
    try:
        created = int(message.get("create_time") or 0)
    except (TypeError, ValueError):
        created = 0
    return LarkMessage(
        message_id=message_id,
        chat_id=chat_id,
        chat_type=kind,
        root_id=root if isinstance(root, str) else None,
        thread_id=thread if isinstance(thread, str) else None,
        open_id=open_id if isinstance(open_id, str) else None,
        user_id=ids.get("user_id") if isinstance(ids.get("user_id"), str) else None,
        tenant=str(sender.get("tenant_key") or "") or None,
        sender_type=str(sender.get("sender_type") or "user"),
        text=_clean(text),
        mentioned=mentioned,
        mentions_anyone=bool(keys),
        create_time=created,
        meta=meta,
        files=_files_of(message_type, content, message_id),
    )


def from_event(payload: dict[str, Any], bot_open_id: str | None) -> LarkMessage | None:
    """An ``im.message.receive_v1`` event (schema 2.0), or None when it is not one."""
    header = as_dict(payload.get("header"))
    if header.get("event_type") != "im.message.receive_v1":
        return None
    event = as_dict(payload.get("event"))
    message = as_dict(event.get("message"))
    sender = as_dict(event.get("sender"))
    return _build(message, sender, bot_open_id, header.get("event_id"), None)


def from_item(item: dict[str, Any], bot_open_id: str | None, chat_type: str) -> LarkMessage | None:
    """One item of ``GET /im/v1/messages`` (catch-up); deleted messages are None."""
    if item.get("deleted"):
        return None
    sender = as_dict(item.get("sender"))
    return _build(item, sender, bot_open_id, None, chat_type)


def verdict(
    msg: LarkMessage, settings: LarkSettings, bot_open_id: str | None, threads: set[str]
) -> Verdict:
    """Decide; the order matters: a stranger is refused before we look at the content."""
    if msg.sender_type != "user" or (bot_open_id is not None and msg.open_id == bot_open_id):
        return Verdict.IGNORE  # our own replies, other bots
    if msg.chat_type == "p2p":
        if not settings.allow_dms:
            return Verdict.REFUSE
    else:
        in_thread = msg.root_id is not None and f"{msg.chat_id}:{msg.root_id}" in threads
        if not msg.mentioned and not in_thread:
            return Verdict.IGNORE  # talk among humans in a group the bot is in
        if settings.allowed_chats and msg.chat_id not in settings.allowed_chats:
            return Verdict.REFUSE
    if settings.allowed_tenants and msg.tenant not in settings.allowed_tenants:
        return Verdict.REFUSE
    if not ({msg.open_id, msg.user_id} - {None}) & settings.allowed_users:
        return Verdict.REFUSE
    if not msg.text and not msg.files:
        return Verdict.EMPTY  # a sticker, a shared chat…: nothing we can forward
    return Verdict.INGEST


def split_conversation(conversation: str) -> tuple[str, str | None]:
    """``"oc_1:om_9"`` → ("oc_1", "om_9"); ``"oc_1"`` → ("oc_1", None)."""
    chat, _, root = conversation.partition(":")
    return chat, root or None
