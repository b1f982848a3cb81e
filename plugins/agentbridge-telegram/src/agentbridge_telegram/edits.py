"""Progress edits (``EditingChannel.edit_message``): one status message per turn, posted with
sendMessage, then changed in place with editMessageText.

Best effort, never retried (``supervisor/progress.py`` drives the throttle): any error is the
caller's to log and costs that update only. Plain text, so no HTML fallback is needed; the
status quotes the sender's message and stays silent (no notification for a status line).
Telegram refuses an edit that changes nothing ("message is not modified"): that is no error,
the chat already shows this text.
"""

from __future__ import annotations

from typing import Any

from agentbridge.models import Message

from agentbridge_telegram.api import BotApi, TelegramApiError
from agentbridge_telegram.formatting import MAX_MESSAGE_LENGTH
from agentbridge_telegram.outbound import chat_ref, reply_target

NOT_MODIFIED = "message is not modified"


async def edit_message(api: BotApi, message: Message, text: str, status_id: str | None) -> str:
    """Post ``text`` as the status of ``message`` (``status_id`` None) or edit that status;
    returns the status message's id."""
    chat = chat_ref(message.conversation)
    text = text[:MAX_MESSAGE_LENGTH] or "…"  # progress text is short; never an empty message
    if status_id is None:
        params: dict[str, Any] = {"disable_notification": True}
        target = reply_target(message.platform_id)
        if target is not None:
            params["reply_parameters"] = {"message_id": target, "allow_sending_without_reply": True}
        result = await api.call("sendMessage", chat_id=chat, text=text, **params)
        return str(result["message_id"])
    try:
        await api.call("editMessageText", chat_id=chat, message_id=int(status_id), text=text)
    except TelegramApiError as exc:
        if exc.status != 400 or NOT_MODIFIED not in exc.description.lower():
            raise
    return status_id
