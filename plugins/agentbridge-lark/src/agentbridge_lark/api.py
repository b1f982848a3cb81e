"""The OpenAPI calls the channel makes, on lark-oapi's request builders and transport.

The SDK's REST client is synchronous (``requests``; even its async path fetches the tenant
token synchronously), so every call runs in a worker thread and never blocks the bridge's
loop. Answers are read as plain JSON (``resp.raw``): a non-JSON body (a proxy's 502 page)
is then an error we classify, not a parse exception from inside the SDK.

The tenant token is fetched in its own step before a send: a failure there proves the
message itself never left (transient, or permanent for rejected credentials), while a
failure of the send request may not. A request refused for its token (revoked, or the
secret was reset) was not acted on: the token is dropped, fetched again and the request
made once more; only a second refusal is final.

The SDK caches tenant tokens in a class-wide cache keyed by app id; each ``LarkApi`` gives it
a fresh one (one Lark app per process), so a channel started again never reuses a token
its predecessor was handed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lark_oapi as lark
from lark_oapi.api.im.v1 import (
    CreateMessageReactionRequest,
    CreateMessageReactionRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteMessageReactionRequest,
    Emoji,
    ListMessageRequest,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
    UpdateMessageRequest,
    UpdateMessageRequestBody,
)
from lark_oapi.core.cache import LocalCache
from lark_oapi.core.enum import AccessTokenType, HttpMethod
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.core.model import BaseRequest, RequestOption
from lark_oapi.core.token.manager import TokenManager

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
#: Lark says the tenant token is not (or no longer) valid: fetch a new one and ask again
TOKEN_INVALID = frozenset({99991663, 99991668})
#: runs one request some other way than a JSON body (an SDK resource method)
Send = Callable[[BaseRequest], Any]


@dataclass(frozen=True)
class LarkApiError(Exception):
    """Lark answered, and said no: the HTTP status, Lark's ``code`` and the rate-limit wait."""

    status: int
    code: int
    msg: str
    retry_after: float | None = None
    #: True when the failing step ran before the message request (the token fetch)
    before_send: bool = False

    def __str__(self) -> str:
        return f"HTTP {self.status} code {self.code}: {self.msg[:200]}"


def _retry_after(headers: dict[str, str]) -> float | None:
    """Lark's gateway sends ``x-ogw-ratelimit-reset`` (seconds); plain ``Retry-After`` too."""
    for name, value in headers.items():
        if name.lower() in ("x-ogw-ratelimit-reset", "retry-after"):
            try:
                return max(float(value), 0.0)
            except (TypeError, ValueError):
                return None
    return None


def answer(raw: Any) -> dict[str, Any]:
    """The ``data`` of a code-0 answer (``RawResponse``-like: status, headers, content);
    anything else raises ``LarkApiError``."""
    status = int(getattr(raw, "status_code", 0) or 0)
    headers = dict(getattr(raw, "headers", None) or {})
    try:
        body = json.loads(bytes(getattr(raw, "content", b"") or b"{}"))
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LarkApiError(status, -1, f"not a Lark answer (HTTP {status})")
    code = int(body.get("code", -1))
    if code != 0 or status >= 300:
        wait = _retry_after(headers) if status == 429 or code in (99991400, 230020) else None
        raise LarkApiError(status, code, str(body.get("msg", "")), wait)
    data = body.get("data")
    return data if isinstance(data, dict) else {}


class LarkApi:
    """One app's OpenAPI client (``lark.Client``) and the few calls the channel needs."""

    def __init__(self, app_id: str, app_secret: str, base_url: str, timeout: float) -> None:
        self.client = (
            lark.Client.builder()
            .app_id(app_id)
            .app_secret(app_secret)
            .domain(base_url)
            .timeout(timeout)
            .log_level(lark.LogLevel.WARNING)  # DEBUG would log request bodies (senders' text)
            .cache(LocalCache())
            .build()
        )
        self._config = self.client._config
        self._token_key = f"self_tenant_token:{app_id}"

    # ------------------------------------------------------------------ plumbing

    def _token(self) -> None:
        self.tenant_token()

    def _call(self, req: BaseRequest, send: Send | None = None) -> dict[str, Any]:
        """Run one request (in a worker thread); the ``data`` of a code-0 answer.

        ``send`` runs it instead of the plain JSON request (the SDK's multipart uploads)."""
        try:
            return self._once(req, send)
        except LarkApiError as exc:
            if exc.code not in TOKEN_INVALID:
                raise
            self.drop_token()  # expired: the next get fetches
            return self._once(req, send)

    def _once(self, req: BaseRequest, send: Send | None) -> dict[str, Any]:
        self._token()
        if send is None:
            option = RequestOption()
            option.headers["Content-Type"] = JSON_TYPE
            resp = self.client.request(req, option)
        else:
            resp = send(req)
        return answer(resp.raw)

    async def call(self, req: BaseRequest, send: Send | None = None) -> dict[str, Any]:
        """``_call`` off the event loop."""
        return await asyncio.to_thread(self._call, req, send)

    @property
    def domain(self) -> str:
        """The OpenAPI's root URL (Feishu's, Lark's, or a test server's)."""
        return str(self._config.domain).rstrip("/")

    def tenant_token(self) -> str:
        """The tenant access token (cached by the SDK); raises ``LarkApiError``
        (``before_send``) when Lark refuses the app's credentials."""
        try:
            return str(TokenManager.get_self_tenant_token(self._config))
        except ObtainAccessTokenException as exc:
            raise LarkApiError(400, int(exc.code or 0), str(exc.msg), before_send=True) from None

    def drop_token(self) -> None:
        """Forget the cached tenant token (Lark said it is no longer valid)."""
        TokenManager.cache.set(self._token_key, "", 0)

    # ------------------------------------------------------------------ the calls

    async def bot_info(self) -> dict[str, Any]:
        """``GET /open-apis/bot/v3/info``: the bot's open_id and name (the answer is not
        wrapped in ``data``)."""
        req = BaseRequest()
        req.http_method = HttpMethod.GET
        req.uri = "/open-apis/bot/v3/info"
        req.token_types = {AccessTokenType.TENANT}

        def run() -> dict[str, Any]:
            self._token()
            resp = self.client.request(req)
            body = json.loads(bytes(resp.raw.content or b"{}"))
            if int(body.get("code", -1)) != 0:
                raise LarkApiError(
                    int(resp.raw.status_code), int(body.get("code", -1)), str(body.get("msg", ""))
                )
            bot = body.get("bot")
            return bot if isinstance(bot, dict) else {}

        return await asyncio.to_thread(run)

    async def send(
        self, chat_id: str, root_id: str | None, msg_type: str, content: str, uuid: str
    ) -> tuple[str, str | None]:
        """Post into a chat, or (``root_id``) into that message's thread: the new message's
        id and its thread's id (a reply in a thread makes the thread if it had none).

        ``uuid`` is Lark's idempotency field: the same uuid within an hour sends at most one
        message, so a retry of a send whose answer was lost cannot post twice.
        """
        if root_id is not None:
            req: BaseRequest = (
                ReplyMessageRequest.builder()
                .message_id(root_id)
                .request_body(
                    ReplyMessageRequestBody.builder()
                    .msg_type(msg_type)
                    .content(content)
                    .reply_in_thread(True)
                    .uuid(uuid)
                    .build()
                )
                .build()
            )
        else:
            req = (
                CreateMessageRequest.builder()
                .receive_id_type("chat_id")
                .request_body(
                    CreateMessageRequestBody.builder()
                    .receive_id(chat_id)
                    .msg_type(msg_type)
                    .content(content)
                    .uuid(uuid)
                    .build()
                )
                .build()
            )
        data = await self.call(req)
        return str(data.get("message_id") or ""), data.get("thread_id") or None

    async def update_message(self, message_id: str, msg_type: str, content: str) -> None:
        """``PUT /open-apis/im/v1/messages/:message_id``: replace the text of a text or post
        message the bot sent (progress edits)."""
        req = (
            UpdateMessageRequest.builder()
            .message_id(message_id)
            .request_body(
                UpdateMessageRequestBody.builder().msg_type(msg_type).content(content).build()
            )
            .build()
        )
        await self.call(req)

    async def list_messages(
        self, container_type: str, container_id: str, start_s: int, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a chat's (or thread's) messages since ``start_s``, oldest first."""
        builder = (
            ListMessageRequest.builder()
            .container_id_type(container_type)
            .container_id(container_id)
            .sort_type("ByCreateTimeAsc")
            .page_size(50)
        )
        if container_type == "chat":
            builder = builder.start_time(str(max(start_s, 0)))  # threads take no time range
        if page_token:
            builder = builder.page_token(page_token)
        data = await self.call(builder.build())
        items = [i for i in data.get("items") or [] if isinstance(i, dict)]
        more = bool(data.get("has_more")) and data.get("page_token")
        return items, str(data["page_token"]) if more else None

    async def add_reaction(self, message_id: str, emoji: str) -> str:
        """React with ``emoji`` (Lark's ``emoji_type``, e.g. ``DONE``); the reaction id."""
        req = (
            CreateMessageReactionRequest.builder()
            .message_id(message_id)
            .request_body(
                CreateMessageReactionRequestBody.builder()
                .reaction_type(Emoji.builder().emoji_type(emoji).build())
                .build()
            )
            .build()
        )
        data = await self.call(req)
        return str(data.get("reaction_id") or "")

    async def delete_reaction(self, message_id: str, reaction_id: str) -> None:
        """Take one of the bot's reactions away."""
        req = (
            DeleteMessageReactionRequest.builder()
            .message_id(message_id)
            .reaction_id(reaction_id)
            .build()
        )
        await self.call(req)
