"""Replies on Lark: markdown → a ``post`` message, Lark's size limits, errors → classes.

A reply part goes out as a ``post`` whose one paragraph is an ``md`` node: Lark renders that
subset of markdown (bold, italics, links, lists, quotes, code blocks) itself. Headings are not
in the subset and become bold lines. A post request body may be at most 30 KB, counted after
two rounds of JSON escaping (the post is a JSON string inside the JSON body), so the declared
limit is in characters with room for the worst case, and ``fit`` splits again by bytes.

Errors: Lark answers ``code != 0`` when it did not act; a rate limit carries the seconds to
wait; anything that may have reached Lark without an answer coming back (a read timeout, a
reset, a 5xx) is ``unknown`` and never resent blindly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
from collections import OrderedDict

import requests
from agentbridge.plugin.protocols import DeliveryError, ErrorClass

from agentbridge_lark.api import LarkApi, LarkApiError

log = logging.getLogger(__name__)

#: characters per reply part: even all-CJK text (3 bytes, escaped twice) stays under 30 KB
MAX_MESSAGE_LENGTH = 4000
#: bytes Lark takes in one ``post`` request body
MAX_POST_BYTES = 30_000
UUID_LENGTH = 50  # Lark's uuid field takes at most 50 characters

#: Lark refused for good: retrying the same request cannot help
PERMANENT_CODES = frozenset(
    {
        230001,  # invalid request parameter
        230002,  # the bot is not in the chat
        230006,  # the app has no bot ability
        230011,  # the message replied to was withdrawn
        230013,  # the bot may not message this user
        230017,  # not the owner of the resource
        230018,  # not allowed by the group's settings
        230019,  # the thread does not exist
        230025,  # the message is too long
        230027,  # lacks the permissions
        230035,  # sending is forbidden
        230099,  # content rejected
        232009,  # the chat was dissolved
        232011,  # not a chat member
        99991663,  # invalid tenant access token
        99991661,  # missing access token
        99991672,  # scope missing
        99991668,  # invalid access token
        99992402,  # a field failed validation (e.g. not a chat id)
        10003,  # invalid app id
        10014,  # invalid app secret
    }
)
RATE_LIMIT_CODES = frozenset({99991400, 230020})
DEFAULT_RATE_WAIT = 5.0


def to_post(markdown: str) -> str:
    """The ``content`` of a ``post`` message showing ``markdown``."""
    lines = []
    fence = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        heading = None if fence else re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        lines.append(f"**{heading.group(1)}**" if heading and heading.group(1) else line)
    text = "\n".join(lines)
    return json.dumps({"zh_cn": {"title": "", "content": [[{"tag": "md", "text": text}]]}})


def body_bytes(content: str) -> int:
    """The size of the request body carrying ``content`` (the SDK escapes it once more)."""
    return len(json.dumps({"content": content, "msg_type": "post"}).encode("utf-8")) + 120


def fit(text: str) -> list[str]:
    """``text`` as one piece, or halves at a line break until each post fits Lark's limit."""
    if body_bytes(to_post(text)) <= MAX_POST_BYTES or len(text) < 2:
        return [text]
    middle = len(text) // 2
    cut = text.rfind("\n", 0, middle)
    cut = middle if cut < middle // 2 else cut + 1
    return fit(text[:cut]) + fit(text[cut:])


def uuid_for(idem_key: str, part: int, piece: int, text: str) -> str:
    """Stable for one piece of one part: a retry, even after a restart, reuses it."""
    seed = f"{idem_key}\0{part}\0{piece}\0{text}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(seed).hexdigest()[:UUID_LENGTH]


class UuidBook:
    """The uuid of each piece: stable across retries (and restarts) of a send whose answer
    was lost; a new one only when a piece that already posted is sent again on purpose."""

    def __init__(self, cap: int = 4096) -> None:
        self._uses: OrderedDict[str, int] = OrderedDict()  # base uuid → times it posted
        self._cap = cap

    def uuid(self, idem_key: str, part: int, piece: int, text: str) -> str:
        """The uuid to send this piece with now."""
        base = uuid_for(idem_key, part, piece, text)
        uses = self._uses.get(base, 0)
        return base if not uses else uuid_for(base, uses, piece, text)

    def posted(self, idem_key: str, part: int, piece: int, text: str) -> None:
        """Lark took the piece: sending the same text again is a new message."""
        base = uuid_for(idem_key, part, piece, text)
        self._uses[base] = self._uses.get(base, 0) + 1
        self._uses.move_to_end(base)
        while len(self._uses) > self._cap:
            self._uses.popitem(last=False)


NO_TEXT = "Only text, pictures and files reach the agent; this one had none and was not forwarded."


async def notice(api: LarkApi, conversation: str, about: str, text: str) -> None:
    """Tell the sender something (best effort). The uuid comes from the message it is about,
    so the same event pushed again, or read again by a catch-up, posts one notice."""
    chat, _, root = conversation.partition(":")
    try:
        await api.send(chat, root or None, "post", to_post(text), uuid_for("notice", 0, 0, about))
    except Exception as exc:
        log.debug("lark: notice to %s not sent: %s", chat, type(exc).__name__)


def _connect_failed(exc: requests.ConnectionError) -> bool:
    """Did the connection never open (refused, DNS)? Then nothing was sent."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    name = type(reason).__name__
    return name in ("NewConnectionError", "NameResolutionError") or isinstance(
        exc, requests.ConnectTimeout
    )


def classify(exc: BaseException) -> tuple[ErrorClass, float | None] | None:
    """Lark's rules; None for errors that are not Lark's (the relay's built-in rules)."""
    if isinstance(exc, DeliveryError):
        return exc.error_class, exc.retry_after
    if isinstance(exc, LarkApiError):
        if exc.status == 429 or exc.code in RATE_LIMIT_CODES:
            return ErrorClass.TRANSIENT, exc.retry_after or DEFAULT_RATE_WAIT
        if exc.code in PERMANENT_CODES or exc.status in (401, 403, 404):
            return ErrorClass.PERMANENT, None
        if exc.before_send:
            return ErrorClass.TRANSIENT, None  # the token step failed: the message never left
        if exc.status >= 500 or exc.code == -1:
            return ErrorClass.UNKNOWN, None  # Lark failed inside, or someone else answered
        return ErrorClass.TRANSIENT, None  # Lark answered with an error: it did not post
    if isinstance(exc, requests.ConnectionError) and _connect_failed(exc):
        return ErrorClass.TRANSIENT, None
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return ErrorClass.TRANSIENT, None
    if isinstance(exc, (requests.RequestException, TimeoutError, OSError)):
        return ErrorClass.UNKNOWN, None  # the request may have reached Lark
    return None


def to_delivery_error(exc: BaseException) -> DeliveryError:
    """The outbox's view of a failed send (unknown unless proven otherwise); no secrets."""
    found = classify(exc)
    error_class, retry_after = found if found is not None else (ErrorClass.UNKNOWN, None)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return DeliveryError(f"lark: {text}"[:500], error_class, retry_after)
