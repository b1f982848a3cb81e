"""What the fake Bot API's parts share: the record of a message the bot sent, Telegram's
HTML check, and the JSON answers (so the server's mixins need not import the server)."""

from __future__ import annotations

import html.parser
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["SentMessage", "error", "ok", "visible_text"]

_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
                 "tg-spoiler", "span", "blockquote", "tg-emoji"}  # fmt: skip


class _HtmlCheck(html.parser.HTMLParser):
    """Telegram-like HTML validation: known tags, balanced; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.visible: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            self.error = self.error or f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.error = self.error or f'Unmatched end tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.visible.append(data)


def visible_text(text: str, parse_mode: str | None) -> tuple[str, str | None]:
    """What Telegram would show for ``text`` and an entity-parse error, if any."""
    if parse_mode != "HTML":
        return text, None
    checker = _HtmlCheck()
    checker.feed(text)
    checker.close()
    if checker.stack and checker.error is None:
        checker.error = f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"'
    return "".join(checker.visible), checker.error


@dataclass
class SentMessage:
    """One message the bot sent."""

    chat_id: int | str
    message_id: int
    text: str
    parse_mode: str | None
    reply_to: int | None
    visible: str
    reply_markup: dict[str, Any] | None = None
    at: float = field(default_factory=time.monotonic)
    #: (time.monotonic(), visible text) of each editMessageText that changed it, in order
    edits: list[tuple[float, str]] = field(default_factory=list)

    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback_data) of its inline keyboard, in order."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]


def ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)
