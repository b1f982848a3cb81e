"""The fake Bot API's inline buttons (a part of ``testing.FakeBotApi``): clicks in, the
bot's acknowledgements and keyboard edits recorded, with Telegram's refusals."""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from agentbridge_telegram.fake_messages import SentMessage
from agentbridge_telegram.fake_messages import error as _error
from agentbridge_telegram.fake_messages import ok as _ok

Params = dict[str, Any]


class FakeButtons:
    """``click`` and the button methods; ``FakeBotApi`` sets the recorded lists."""

    sent: list[SentMessage]
    callback_answers: list[dict[str, Any]]
    markup_edits: list[dict[str, Any]]
    queries: set[str]
    next_query = itertools.count(1)

    def add_update(self, update: dict[str, Any]) -> int:
        raise NotImplementedError

    def click(self, sent: SentMessage, user_id: int, label: str) -> dict[str, Any]:
        """Queue the ``callback_query`` of ``user_id`` pressing the button ``label`` of a
        message the bot sent (in a private chat the chat is the user's own)."""
        data = dict(sent.buttons())[label]
        query_id = f"q{next(self.next_query)}"
        self.queries.add(query_id)
        query = {
            "id": query_id,
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "message": {
                "message_id": sent.message_id,
                "chat": {"id": sent.chat_id, "type": "private"},
                "date": int(time.time()),
                "text": sent.visible,
            },
            "chat_instance": "1",
            "data": data,
        }
        update = {"callback_query": query}
        self.add_update(update)
        return update

    async def _m_answerCallbackQuery(self, params: Params, request: web.Request) -> web.Response:
        if params.get("callback_query_id") not in self.queries:
            return _error(400, "Bad Request: query is too old and response timeout expired")
        self.callback_answers.append(params)
        return _ok(True)

    async def _m_editMessageReplyMarkup(self, params: Params, request: web.Request) -> web.Response:
        key = (params.get("chat_id"), params.get("message_id"))
        found = [m for m in self.sent if (m.chat_id, m.message_id) == key]
        if not found:
            return _error(400, "Bad Request: message to edit not found")
        self.markup_edits.append(params)
        found[0].reply_markup = params.get("reply_markup")
        return _ok(True)
