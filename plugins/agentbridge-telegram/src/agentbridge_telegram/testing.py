"""A fake Bot API server for tests (shipped, so bridge and plugin users can test against it).

Real HTTP on 127.0.0.1 with Telegram's semantics where they matter to the bridge:

- ``getUpdates``: updates with ``update_id < offset`` are confirmed and dropped for good;
  the rest are returned (up to ``limit``); with none, the request long-polls up to
  ``timeout`` seconds; a second concurrent poll ends the first with 409, like Telegram.
- ``sendMessage``: recorded in ``sent``; text over 4096 UTF-16 units (after HTML parsing)
  is refused; malformed HTML gives "can't parse entities"; faults can be queued, including
  the ambiguous ones (``AMBIGUOUS``): the message is sent, then the answer is lost.
- ``sendPhoto`` / ``sendDocument``: multipart uploads, recorded with their bytes in
  ``uploads``; over 10 MB (photo) / 50 MB (document) they get 413; same faults as sendMessage.
- ``editMessageText``: only a message the bot sent; the new text is checked like
  sendMessage's and recorded in its ``edits``; the same text again is "message is not modified".
- ``sendChatAction``, ``setMessageReaction``, ``getMe``, ``setWebhook``: recorded.
- Buttons: ``click(sent, user_id, label)`` queues the ``callback_query`` of a button the bot
  sent; ``answerCallbackQuery`` (only for a query handed out) and ``editMessageReplyMarkup``
  (only for a message the bot sent; it changes that message's keyboard) are recorded.

    async with FakeBotApi(token="123:abc") as api:
        api.add_message(chat_id=42, user_id=7, text="hi")
        base_url = api.base_url
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from typing import Any

from aiohttp import web

from agentbridge_telegram.fake_messages import SentMessage, visible_text
from agentbridge_telegram.fake_messages import error as _error
from agentbridge_telegram.fake_messages import ok as _ok
from agentbridge_telegram.fake_uploads import FakeUploads, SentFile, read_form
from agentbridge_telegram.formatting import MAX_MESSAGE_LENGTH, utf16_len
from agentbridge_telegram.testing_buttons import FakeButtons

#: fault name → (HTTP status, description, parameters)
FAULTS: dict[str, tuple[int, str, dict[str, Any]]] = {
    "429": (429, "Too Many Requests: retry after 7", {"retry_after": 7}),
    "429_now": (429, "Too Many Requests: retry after 0", {"retry_after": 0}),
    "parse": (400, "Bad Request: can't parse entities: Unsupported start tag at byte 3", {}),
    "blocked": (403, "Forbidden: bot was blocked by the user", {}),
    "kicked": (403, "Forbidden: bot was kicked from the group chat", {}),
    "deactivated": (403, "Forbidden: user is deactivated", {}),
    "chat_not_found": (400, "Bad Request: chat not found", {}),
    "chat_id_empty": (400, "Bad Request: chat_id is empty", {}),
    "500": (500, "Internal Server Error", {}),
    "502": (502, "Bad Gateway", {}),
    "photo_dimensions": (400, "Bad Request: PHOTO_INVALID_DIMENSIONS", {}),
}

Params = dict[str, Any]
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
#: faults after which the message IS in the chat but the client never gets the answer:
#: ``stall`` holds the answer back until the client times out, ``reset`` sends a TCP reset
AMBIGUOUS = frozenset({"stall", "reset"})


class FakeBotApi(FakeButtons, FakeUploads):
    """The fake server; ``base_url`` is what the channel's ``base_url`` setting points at."""

    def __init__(self, token: str = "123456:TEST-token_abcdefghij", host: str = "127.0.0.1"):
        self.token = token
        self.host = host
        self.port = 0
        self.updates: list[dict[str, Any]] = []  # not yet confirmed, in update_id order
        self.confirmed_offset = 0  # highest offset any getUpdates presented
        self.sent: list[SentMessage] = []
        self.uploads: list[SentFile] = []  # files sent (sendPhoto / sendDocument)
        self.actions: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.faults: list[str] = []  # consumed by sendMessage, first first
        self.always_fail: str | None = None  # a FAULTS name every sendMessage fails with
        #: how long a ``stall`` holds its answer back (it ends early when the server stops)
        self.stall_seconds = 60.0
        #: update_id → time.monotonic() when a getUpdates offset confirmed it (the "ack")
        self.confirm_times: dict[int, float] = {}
        self.blocked_chats: set[int | str] = set()
        self.migrated_chats: dict[int | str, int] = {}  # group id → its new supergroup id
        self.webhook: dict[str, Any] | None = None
        self.files: dict[str, bytes] = {}  # file_id → bytes (getFile + the download URL)
        self.downloads: list[str] = []  # file_paths fetched
        self.callback_answers: list[dict[str, Any]] = []  # answerCallbackQuery params
        self.markup_edits: list[dict[str, Any]] = []  # editMessageReplyMarkup params
        self.queries: set[str] = set()  # callback_query ids handed out (``click``)
        self._next_update = itertools.count(1000)
        self._next_message = itertools.count(1)
        self._new = asyncio.Condition()
        self._poll_generation = 0
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The server's root, as the channel's ``base_url``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeBotApi:
        """Listen on a free port (the same one again after a ``stop``)."""
        self._closing = False
        self._closed.clear()
        app = web.Application(client_max_size=64 * 1024 * 1024)  # room for a 50 MB document
        app.router.add_post("/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """End pending long polls at once (empty answers), then stop listening."""
        self._closing = True
        self._closed.set()  # stalled answers end now
        async with self._new:
            self._new.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ scripting

    def add_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (``update_id`` assigned when missing); returns its id."""
        update.setdefault("update_id", next(self._next_update))
        self.updates.append(update)
        self.updates.sort(key=lambda u: int(u["update_id"]))
        self._notify()
        return int(update["update_id"])

    def add_message(
        self,
        chat_id: int,
        user_id: int,
        text: str | None = None,
        caption: str | None = None,
        message_id: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue a private-chat message update (``extra``: more fields, e.g. ``photo``)."""
        message: dict[str, Any] = {
            "message_id": message_id if message_id is not None else next(self._next_message),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "date": int(time.time()),
        }
        if text is not None:
            message["text"] = text
        if caption is not None:
            message["caption"] = caption
        message.update(extra or {})
        update = {"message": message}
        self.add_update(update)
        return update

    def add_file(self, data: bytes) -> str:
        """Store a file the bot may fetch; returns its ``file_id``."""
        file_id = f"file{len(self.files) + 1}-{len(data)}"
        self.files[file_id] = data
        return file_id

    def redeliver(self, update: dict[str, Any]) -> int:
        """Hand out a copy of an update again, even if confirmed; returns the new update_id."""
        copy = dict(update)
        copy["update_id"] = next(self._next_update)
        return self.add_update(copy)

    def fail_next(self, *faults: str) -> None:
        """Make the next ``sendMessage`` calls fail with these ``FAULTS`` names, in order.

        ``"ok"`` lets one call through, so ``fail_next("ok", "429")`` fails the second call.
        ``"stall"`` and ``"reset"`` (``AMBIGUOUS``) send the message, then lose the answer.
        """
        for fault in faults:
            if fault != "ok" and fault not in FAULTS and fault not in AMBIGUOUS:
                raise ValueError(f"unknown fault {fault!r}")
        self.faults.extend(faults)

    def _notify(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the next poll sees the update anyway

        async def wake() -> None:
            async with self._new:
                self._new.notify_all()

        task = loop.create_task(wake())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ HTTP

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        self.calls.append(method)
        try:
            if request.content_type == "multipart/form-data":
                params = await read_form(request)
            else:
                params = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, "Bad Request: invalid JSON")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result: web.Response = await handler(params, request)
        return result

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.removeprefix("documents/")
        if file_id not in self.files:
            return web.Response(status=404)
        self.downloads.append(path)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def _m_getFile(self, params: Params, request: web.Request) -> web.Response:
        file_id = params.get("file_id")
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        size = len(self.files[file_id])
        if size > 20 * 1024 * 1024:
            return _error(400, "Bad Request: file is too big")
        return _ok({"file_id": file_id, "file_size": size, "file_path": f"documents/{file_id}"})

    async def _m_getMe(self, params: Params, request: web.Request) -> web.Response:
        return _ok({"id": int(self.token.split(":")[0]), "is_bot": True, "username": "fake_bot"})

    async def _m_getUpdates(self, params: Params, request: web.Request) -> web.Response:
        if self.webhook is not None:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        if offset:
            self.confirmed_offset = max(self.confirmed_offset, offset)
            now = time.monotonic()
            for update in self.updates:
                if int(update["update_id"]) < offset:
                    self.confirm_times.setdefault(int(update["update_id"]), now)
            self.updates = [u for u in self.updates if int(u["update_id"]) >= offset]
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        self._poll_generation += 1
        generation = self._poll_generation
        async with self._new:
            self._new.notify_all()  # an older poll still waiting ends with 409, like Telegram
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._new:
            while not self.updates and not self._closing:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._new.wait(), left)
                except TimeoutError:
                    break
                if generation != self._poll_generation:
                    return _error(409, "Conflict: terminated by other getUpdates request")
        return _ok(self.updates[:limit])

    def _refusal(self, chat_id: Any) -> web.Response | str:
        """The chat's or a queued fault's error answer, else the fault to act out."""
        if chat_id in (None, ""):
            return _error(400, "Bad Request: chat_id is empty")
        if chat_id in self.blocked_chats:
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.migrated_chats:
            return _error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated_chats[chat_id]},
            )
        fault = self.faults.pop(0) if self.faults else (self.always_fail or "ok")
        if fault != "ok" and fault not in AMBIGUOUS:
            status, description, parameters = FAULTS[fault]
            return _error(status, description, parameters)
        return fault

    async def _answer(self, fault: str, request: web.Request, result: Any) -> web.Response:
        answer = _ok(result)
        if fault == "stall":  # the client's timeout fires first; the message is in the chat
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.stall_seconds)
        elif fault == "reset":
            _reset(request)
        return answer

    async def _m_sendMessage(self, params: Params, request: web.Request) -> web.Response:
        chat_id: Any = params.get("chat_id")  # checked by ``_refusal``
        fault = self._refusal(chat_id)
        if isinstance(fault, web.Response):
            return fault
        text = str(params.get("text") or "")
        parse_mode = params.get("parse_mode")
        visible, error = visible_text(text, parse_mode)
        if error:
            return _error(400, f"Bad Request: can't parse entities: {error}")
        if not visible.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_len(visible) > MAX_MESSAGE_LENGTH:
            return _error(400, "Bad Request: message is too long")
        reply = params.get("reply_parameters") or {}
        reply_to = reply.get("message_id", params.get("reply_to_message_id"))
        message = SentMessage(
            chat_id,
            next(self._next_message),
            text,
            parse_mode,
            reply_to,
            visible,
            params.get("reply_markup"),
        )
        self.sent.append(message)
        result = {"message_id": message.message_id, "chat": {"id": chat_id}, "text": visible}
        return await self._answer(fault, request, result)

    async def _m_editMessageText(self, params: Params, request: web.Request) -> web.Response:
        key = (params.get("chat_id"), params.get("message_id"))
        found = [m for m in self.sent if (m.chat_id, m.message_id) == key]
        if not found:
            return _error(400, "Bad Request: message to edit not found")
        message = found[0]
        text = str(params.get("text") or "")
        parse_mode = params.get("parse_mode")
        visible, error = visible_text(text, parse_mode)
        if error:
            return _error(400, f"Bad Request: can't parse entities: {error}")
        if not visible.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_len(visible) > MAX_MESSAGE_LENGTH:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        if visible == message.visible and params.get("reply_markup") == message.reply_markup:
            return _error(400, NOT_MODIFIED)
        message.text, message.parse_mode, message.visible = text, parse_mode, visible
        message.reply_markup = params.get("reply_markup")
        message.edits.append((time.monotonic(), visible))
        return _ok({"message_id": message.message_id, "chat": {"id": key[0]}, "text": visible})

    async def _m_sendChatAction(self, params: Params, request: web.Request) -> web.Response:
        self.actions.append(params)
        return _ok(True)

    async def _m_setMessageReaction(self, params: Params, request: web.Request) -> web.Response:
        self.reactions.append(params)
        return _ok(True)

    async def _m_setWebhook(self, params: Params, request: web.Request) -> web.Response:
        self.webhook = params
        return _ok(True)

    async def _m_deleteWebhook(self, params: Params, request: web.Request) -> web.Response:
        self.webhook = None
        return _ok(True)


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), before any answer byte."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


__all__ = ["AMBIGUOUS", "FAULTS", "FakeBotApi", "SentFile", "SentMessage", "visible_text"]
