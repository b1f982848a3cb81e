"""Inline buttons: a permission question's Allow / Deny, and the clicks that answer it.

A reply with actions (``agentbridge.delivery.actions.reply_actions``) is sent with one button
per action; its ``callback_data`` is the action's answer text (``"yes abc12"``, well under
Telegram's 64 bytes). A click (a ``callback_query`` update) is ingested as that text from the
clicking user in the button's chat, through the same ``ctx.ingest`` as a typed message, so
the core relay checks sender, conversation and first-answer-wins. Only then is the click
acknowledged (``answerCallbackQuery``) and the keyboard edited away, so a bridge that dies in
between gets the update again and the relay answers "already answered".

A click from a user not in ``allowed_users`` is logged and counted, never ingested and never
acknowledged: a stranger learns nothing from the bot. Data that is not an answer, or names no
request of the button's chat (an old or forged button), is acknowledged with a short note and
goes nowhere: it never reaches the agent as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from agentbridge.delivery.actions import click_answers_here, reply_actions
from agentbridge.ledger.sqlite import IdempotencyConflict
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.supervisor.routing import Unroutable

from agentbridge_telegram.api import BotApi, get_logger

log = get_logger(__name__)

_ANSWER = re.compile(r"(yes|no|always) [a-z0-9]{5}")
_DONE = {"yes": "Allow", "always": "Allow for this session", "no": "Deny"}
STALE = "This button no longer answers anything."
Spawn = Callable[[Coroutine[Any, Any, None]], None]


def keyboard(item: OutboxItem) -> dict[str, Any] | None:
    """The ``reply_markup`` of a reply with actions (one button a row), else None."""
    actions = reply_actions(item)
    if not actions:
        return None
    rows = [[{"text": a.label, "callback_data": a.answer}] for a in actions]
    return {"inline_keyboard": rows}


@dataclass(frozen=True)
class Click:
    """One ``callback_query``, reduced."""

    query_id: str
    user_id: int | None
    chat_id: int
    message_id: int
    data: str


def parse_click(update: dict[str, Any]) -> Click | None:
    """The click in ``update``; None when it has no chat message (inline mode) or is malformed."""
    query = update.get("callback_query")
    if not isinstance(query, dict):
        return None
    try:
        message = query["message"]
        user = query.get("from") or {}
        user_id = user.get("id")
        return Click(
            query_id=str(query["id"]),
            user_id=user_id if isinstance(user_id, int) else None,
            chat_id=int(message["chat"]["id"]),
            message_id=int(message["message_id"]),
            data=str(query.get("data") or ""),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.info("telegram: ignored a button click (update %s): %r", update.get("update_id"), exc)
        return None


async def handle_click(
    api: BotApi, ctx: ChannelContext, allowed: frozenset[int], click: Click, spawn: Spawn
) -> bool:
    """Ingest one click as its answer text; False when the sender is refused.

    Raises only when the ingest itself failed: then the update must come back.
    """
    if click.user_id is None or click.user_id not in allowed:
        log.warning(
            "telegram: refused a button click from unauthorised user %s in chat %s",
            click.user_id,
            click.chat_id,
        )
        return False
    if _ANSWER.fullmatch(click.data) is None or (
        ctx.ledger is not None
        and not await click_answers_here(ctx.ledger, ctx.name, str(click.chat_id), click.data)
    ):  # an old or forged button (data naming another chat's request): never agent text
        spawn(_acknowledge(api, click, STALE))
        return True
    try:
        await ctx.ingest(
            str(click.chat_id),
            str(click.user_id),
            click.data,
            key=f"click:{click.query_id}",
            meta={"callback_query": click.query_id, "message_id": click.message_id},
        )
    except IdempotencyConflict as exc:  # recorded by the ledger; nothing to re-deliver
        log.warning("telegram: %s", exc)
    except Unroutable as exc:
        spawn(_acknowledge(api, click, f"Not delivered: {exc}"))
        return True
    spawn(_acknowledge(api, click, f"{_DONE[click.data.split()[0]]}: sent", clear=True))
    return True


async def _acknowledge(api: BotApi, click: Click, text: str, clear: bool = False) -> None:
    """Stop the client's spinner, then take the keyboard off the question (best effort)."""
    try:
        await api.call("answerCallbackQuery", callback_query_id=click.query_id, text=text)
        if clear:
            await api.call(
                "editMessageReplyMarkup",
                chat_id=click.chat_id,
                message_id=click.message_id,
                reply_markup={"inline_keyboard": []},
            )
    except Exception as exc:
        log.debug("telegram: click %s not acknowledged: %s", click.query_id, exc)
