"""Outbound helpers: Discord's 2,000-character limit, nonces, and error classes.

Discord renders Markdown itself, so reply text goes out as the agent wrote it; only the
length needs care. Every message we create carries a ``nonce`` derived from the outbox row
and the part's text with ``enforce_nonce``: Discord then returns the message it already has
for that nonce instead of creating a second one, so a retry of a send whose answer was lost
cannot post twice (within Discord's nonce window of a few minutes), and ``reconcile`` can find
the message by its nonce.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import aiohttp
import discord
from agentbridge.plugin.protocols import DeliveryError, ErrorClass

MAX_MESSAGE_LENGTH = 2000  # Discord's limit for ``content``, in characters
NONCE_LENGTH = 25  # Discord accepts nonces of up to 25 characters
#: Discord's JSON error codes that mean "this will never work" (Missing Access, Unknown
#: Channel, Unknown Message, Cannot send messages to this user, Missing Permissions)
PERMANENT_CODES = {50001, 10003, 10008, 50007, 50013}


def chunk_text(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Split at the last newline (else space) before ``limit``; the parts join to ``text``."""
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        cut = limit if cut < limit // 2 else cut + 1
        parts.append(text[:cut])
        text = text[cut:]
    if text:
        parts.append(text)
    return parts


def nonce_for(idem_key: str, index: int, number: int, text: str) -> str:
    """Stable for one part of one reply: a retry (even after a restart) reuses it."""
    seed = f"{idem_key}\0{index}\0{number}\0{text}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(seed).hexdigest()[:NONCE_LENGTH]


def reply_target(reply_to: str | None) -> int | None:
    """The Discord message id from an outbox ``reply_to`` (our ingest key, a bare id)."""
    if not reply_to:
        return None
    tail = reply_to.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _retry_after(exc: discord.HTTPException) -> float | None:
    response: Any = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(exc: BaseException) -> tuple[ErrorClass, float | None] | None:
    """Discord's rules; None for errors that are not Discord's (the relay's own rules)."""
    if isinstance(exc, DeliveryError):
        return exc.error_class, exc.retry_after
    if isinstance(exc, discord.RateLimited):  # a 429 longer than discord.py waits itself
        return ErrorClass.TRANSIENT, float(exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            return ErrorClass.TRANSIENT, _retry_after(exc) or 5.0
        if exc.status in (401, 403, 404) or exc.code in PERMANENT_CODES:
            return ErrorClass.PERMANENT, None
        if 400 <= exc.status < 500:
            return ErrorClass.PERMANENT, None  # a request Discord refused to act on, for good
        return ErrorClass.UNKNOWN, None  # a 5xx after the body went out: it may have acted
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorClass.TRANSIENT, None  # never connected: nothing was sent
    if isinstance(exc, aiohttp.ClientError):
        return ErrorClass.UNKNOWN, None  # disconnected mid-request: it may have acted
    return None  # plain OS errors and timeouts: the relay's rules (refused → transient)


def to_delivery_error(exc: BaseException) -> DeliveryError:
    """The outbox's view of a failed send (unknown unless proven otherwise)."""
    found = classify(exc)
    error_class, retry_after = found if found is not None else (ErrorClass.UNKNOWN, None)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return DeliveryError(f"discord: {text}"[:500], error_class, retry_after)


def remember(memory: OrderedDict[Any, Any], key: Any, value: Any, cap: int = 4096) -> None:
    """Remember ``key`` in a bounded, oldest-first-forgotten map."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > cap:
        memory.popitem(last=False)
