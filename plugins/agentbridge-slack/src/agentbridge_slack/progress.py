"""Progress while a turn runs (``EditingChannel``): one status message, edited in place.

The core (``supervisor/progress.py``, ``[channels.slack] progress = true``) calls
``edit_message`` at most once per ``progress_interval``: the first call posts the status
(``chat.postMessage``) in the message's DM or thread, later ones change it (``chat.update``),
so the thread gets one line that moves, never a new message every few seconds. The text is
escaped as mrkdwn like a reply (no ``<!channel>`` ping). Best effort: the core logs a failure
and the next update tries again.
"""

from __future__ import annotations

from agentbridge.models import Message
from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack.inbound import split_conversation
from agentbridge_slack.mrkdwn import HARD_LIMIT, to_mrkdwn


class ProgressEditing:
    """Mixed into ``SlackChannel``, whose ``start`` sets ``_web``."""

    _web: AsyncWebClient | None

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Post ``text`` about ``message`` (``status_id`` None) or update that status
        message to say it; the status message's ts."""
        if self._web is None:
            raise RuntimeError("slack channel not started")
        channel, thread = split_conversation(message.conversation)
        shown = to_mrkdwn(text)[:HARD_LIMIT] or "…"
        if status_id is None:
            answer = await self._web.chat_postMessage(
                channel=channel, text=shown, thread_ts=thread, mrkdwn=True, unfurl_links=False
            )
            return str(answer.get("ts"))
        await self._web.chat_update(channel=channel, ts=status_id, text=shown)
        return status_id
