"""Slack errors → the relay's classes (replies go out at most once).

Slack answers ``ok: false`` with an error code when it did *not* act: those are transient or
permanent by code. A 429 carries ``Retry-After``. Anything that may have reached Slack without
an answer coming back (timeout, reset, a 5xx) is ``unknown``: never resent blindly.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from agentbridge.plugin.protocols import DeliveryError, ErrorClass
from slack_sdk.errors import SlackApiError

#: Slack refused for good: retrying the same request cannot help
PERMANENT_CODES = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "is_archived",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "missing_scope",
        "cannot_reply_to_message",
        "invalid_blocks",
        "ekm_access_denied",
    }
)
#: Slack says it failed inside: it may or may not have posted
UNKNOWN_CODES = frozenset(
    {"internal_error", "fatal_error", "request_timeout", "service_unavailable"}
)


def api_code(exc: SlackApiError) -> str:
    """The ``error`` field of a Slack answer ("" when the body was not Slack's JSON)."""
    data = getattr(exc.response, "data", None)
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds from the ``Retry-After`` header of a 429 (Slack sends it in seconds)."""
    headers = getattr(exc.response, "headers", None) or {}
    for name, value in dict(headers).items():
        if name.lower() == "retry-after":
            try:
                return max(float(value if isinstance(value, str) else value[0]), 0.0)
            except (TypeError, ValueError, IndexError):
                return None
    return None


def classify(exc: BaseException) -> ErrorClass | None:
    """Our rules for what ``chat.postMessage`` raised; None = not ours (built-in rules)."""
    if isinstance(exc, DeliveryError):
        return exc.error_class
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        code = api_code(exc)
        if status == 429 or code == "ratelimited":
            return ErrorClass.TRANSIENT
        if code in PERMANENT_CODES:
            return ErrorClass.PERMANENT
        if status >= 500 or code in UNKNOWN_CODES or not code:
            return ErrorClass.UNKNOWN
        return ErrorClass.TRANSIENT  # Slack answered ok:false: it did not post
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError, socket.gaierror)):
        return ErrorClass.TRANSIENT  # never connected: nothing was written
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ClientError, OSError)):
        return ErrorClass.UNKNOWN
    return None


def to_delivery_error(exc: BaseException) -> DeliveryError:
    """One ``DeliveryError`` carrying class and retry-after; the text never holds a token."""
    if isinstance(exc, DeliveryError):
        return exc
    error_class = classify(exc) or ErrorClass.UNKNOWN
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", "?")
        wait = retry_after(exc)
        code = api_code(exc) or "no error code"
        return DeliveryError(f"slack: HTTP {status} {code}", error_class, wait)
    return DeliveryError(f"slack: {type(exc).__name__}: {exc}", error_class)
