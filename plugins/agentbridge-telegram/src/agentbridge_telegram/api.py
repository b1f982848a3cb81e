"""A small Bot API client on aiohttp, and what its errors mean for the outbox.

Hand written rather than a framework so the channel owns the getUpdates offset exactly: it
must advance only after the ledger commit. The token is part of every request URL
(``/bot<token>/method``), so every error this module raises is redacted and chained to
nothing: a traceback must never carry the token into a log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from agentbridge.plugin.protocols import DeliveryError, ErrorClass

_TOKEN_SHAPE = re.compile(r"bot\d+:[A-Za-z0-9_-]+")

#: description fragments (lower case) that mean "this reply can never be delivered"
PERMANENT_PATTERNS: tuple[str, ...] = (
    "chat not found",
    "user not found",
    "bot was blocked by the user",
    "bot was kicked",
    "user is deactivated",
    "chat_id is empty",
    "bot can't initiate conversation",
    "have no rights to send",
    "not enough rights",
    "message is too long",
    "request entity too large",
    "file is too big",
)


def redact(text: str, token: str | None = None) -> str:
    """``text`` with the bot token (and anything shaped like one) replaced."""
    if token:
        text = text.replace(token, "<token>")
    return _TOKEN_SHAPE.sub("bot<token>", text)


def get_logger(name: str) -> logging.Logger:
    """A logger of this package with the redacting filter on it.

    Logger filters only see records made by that very logger (not by its children), so every
    module gets its own filter instead of one on the package logger.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


class RedactingFilter(logging.Filter):
    """Defence in depth: redact token-shaped strings in every record of our loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the message once, with its arguments merged, then let it through."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record alone
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


@dataclass
class TelegramApiError(Exception):
    """The Bot API answered ``ok: false`` (or an unusable body)."""

    method: str
    status: int
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"telegram {self.method}: {self.status} {self.description}"

    @property
    def retry_after(self) -> float | None:
        """Seconds Telegram asked us to wait (429 Too Many Requests)."""
        value = self.parameters.get("retry_after")
        return float(value) if isinstance(value, int | float) else None

    @property
    def migrate_to_chat_id(self) -> int | None:
        """The supergroup a group was upgraded to, if that is why the send failed."""
        value = self.parameters.get("migrate_to_chat_id")
        return int(value) if isinstance(value, int) else None

    @property
    def cannot_parse_entities(self) -> bool:
        """Our HTML was refused: resend as plain text."""
        return self.status == 400 and "can't parse entities" in self.description.lower()


class TelegramNetworkError(Exception):
    """A request that never got a Bot API answer (timeout, refused, reset); redacted.

    ``sent``: the request had started going out (its headers were being written) when it
    failed, so Telegram may have acted on it; False proves it never left this host.
    """

    def __init__(self, message: str, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


def classify(exc: BaseException) -> ErrorClass | None:
    """Transient, permanent or unknown, for the outbox relay; None = not an error we know.

    At most once: only an answer or failure proving Telegram did not act is transient (the
    request never left; 429 flood control; 401/404 bad token; 409). A lost answer after the
    request went out (timeout, reset) and any 5xx are ``unknown``: the message may be in the
    chat. Errors saying the chat is unreachable or the request can never succeed are
    permanent; a bad token is transient because once fixed every queued reply should go out.
    """
    if isinstance(exc, DeliveryError):
        return exc.error_class
    if isinstance(exc, TelegramNetworkError):
        return ErrorClass.UNKNOWN if exc.sent else ErrorClass.TRANSIENT
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: nothing sent
        return ErrorClass.TRANSIENT
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ClientError):
        return ErrorClass.UNKNOWN
    if not isinstance(exc, TelegramApiError):
        return None
    text = exc.description.lower()
    if exc.status < 400 or exc.status >= 500:  # an unreadable 2xx answer, or a server error
        return ErrorClass.UNKNOWN
    if exc.status == 429 or exc.status in (401, 404, 409):
        return ErrorClass.TRANSIENT
    if any(pattern in text for pattern in PERMANENT_PATTERNS):
        return ErrorClass.PERMANENT
    if exc.status in (400, 403):
        return ErrorClass.PERMANENT
    return ErrorClass.TRANSIENT  # any other 4xx: Telegram refused the request


def to_delivery_error(exc: BaseException) -> DeliveryError:
    """The ``DeliveryError`` the relay understands, with Telegram's retry_after when given."""
    error_class = classify(exc) or ErrorClass.UNKNOWN
    retry_after = exc.retry_after if isinstance(exc, TelegramApiError) else None
    return DeliveryError(str(exc), error_class, retry_after)


@dataclass(frozen=True)
class Upload:
    """One file of a multipart request: the form field (``photo``/``document``) and bytes."""

    field: str
    name: str
    data: bytes
    media_type: str = "application/octet-stream"


@dataclass
class _Progress:
    """Per request: has any byte of it possibly left this host?"""

    sent: bool = False


async def _headers_going_out(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    """aiohttp calls this just before writing the request line and headers."""
    if isinstance(ctx.trace_request_ctx, _Progress):
        ctx.trace_request_ctx.sent = True


_SENT_TRACE = aiohttp.TraceConfig()
_SENT_TRACE.on_request_headers_sent.append(_headers_going_out)


class BotApi:
    """One bot's Bot API: ``await api.call("sendMessage", chat_id=…, text=…)``."""

    def __init__(self, token: str, base_url: str, request_timeout: float = 20.0) -> None:
        self._token = token
        self._base = base_url.rstrip("/")
        self._timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    def redact(self, text: str) -> str:
        """``text`` without this bot's token."""
        return redact(text, self._token)

    def _url(self, method: str) -> str:
        return f"{self._base}/bot{self._token}/{method}"

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no session-wide timeout: long polls set their own per request
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None), trace_configs=[_SENT_TRACE]
            )
        return self._session

    async def reset(self) -> None:
        """Drop pooled connections (after a sleep they are half-dead); the next call redials."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def close(self) -> None:
        """Release the connection pool; safe to call twice."""
        await self.reset()

    async def call(self, method: str, http_timeout: float | None = None, **params: Any) -> Any:
        """POST one method with JSON params; return ``result`` or raise a redacted error.

        ``http_timeout`` bounds the whole request (a long poll passes its own, longer one);
        ``params`` are the method's parameters (None values are left out).
        """
        payload = {k: v for k, v in params.items() if v is not None}
        return await self._post(method, http_timeout, json=payload)

    async def upload(
        self, method: str, upload: Upload, http_timeout: float | None = None, **params: Any
    ) -> Any:
        """POST one method as multipart with one file (``sendPhoto``/``sendDocument``).

        Objects among ``params`` are sent JSON-encoded, as the Bot API wants them in a form.
        """
        form = aiohttp.FormData()
        for key, value in params.items():
            if value is not None:
                form.add_field(key, value if isinstance(value, str) else json.dumps(value))
        form.add_field(
            upload.field, upload.data, filename=upload.name, content_type=upload.media_type
        )
        return await self._post(method, http_timeout, data=form)

    async def _post(self, method: str, http_timeout: float | None, **body: Any) -> Any:
        session = self._ensure_session()
        total = http_timeout if http_timeout is not None else self._timeout
        limit = aiohttp.ClientTimeout(total=total)
        progress = _Progress()
        try:
            async with session.post(
                self._url(method), timeout=limit, trace_request_ctx=progress, **body
            ) as resp:
                status = resp.status
                try:
                    answer = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    answer = None
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # ``from None``: aiohttp's exceptions carry the request URL, hence the token
            detail = self.redact(str(exc)) or type(exc).__name__
            raise TelegramNetworkError(f"telegram {method}: {detail}", progress.sent) from None
        if not isinstance(answer, dict):
            raise TelegramApiError(method, status, f"unreadable answer (HTTP {status})")
        if answer.get("ok") is True:
            return answer.get("result")
        params_out = answer.get("parameters")
        raise TelegramApiError(
            method,
            int(answer.get("error_code") or status),
            self.redact(str(answer.get("description") or f"HTTP {status}")),
            params_out if isinstance(params_out, dict) else {},
        )

    async def download(self, file_path: str, target: Path, limit: int) -> int:
        """Fetch ``file_path`` (from ``getFile``) into ``target``; at most ``limit`` bytes.

        Raises ``TelegramNetworkError`` (retry later) or ``TelegramApiError`` (refused).
        """
        url = f"{self._base}/file/bot{self._token}/{file_path}"
        session = self._ensure_session()
        size = 0
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=120)) as resp:
                if resp.status != 200:
                    raise TelegramApiError("file", resp.status, "file download refused")
                with target.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise TelegramApiError("file", 413, f"file over {limit} bytes")
                        out.write(chunk)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = self.redact(str(exc)) or type(exc).__name__
            raise TelegramNetworkError(f"telegram file download: {detail}") from None
        return size
