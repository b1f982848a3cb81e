"""One outbox chunk onto Slack: a text (mrkdwn), a question with its buttons, or a file.

Kept apart from ``channel.py`` (which classes and logs what this raises): a permission
question (``reply_actions``) carries Block Kit buttons on its last piece; a file the agent
sends (``file_ref``) is uploaded with its caption instead of posting the text line that
names it.
"""

from __future__ import annotations

from agentbridge.delivery.actions import reply_actions
from agentbridge.delivery.attachments import file_ref
from agentbridge.models import OutboxItem
from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack import files, interactive
from agentbridge_slack.inbound import split_conversation
from agentbridge_slack.mrkdwn import HARD_LIMIT, to_mrkdwn

EMPTY_REPLY = "(the agent's reply was empty)"


def posted_text(item: OutboxItem) -> str:
    """The first piece of text Slack shows for ``item`` (what ``reconcile`` looks for)."""
    return (to_mrkdwn(item.text) or EMPTY_REPLY)[:HARD_LIMIT]


async def post(web: AsyncWebClient, item: OutboxItem, max_upload_bytes: int) -> str | None:
    """Post ``item`` into its DM or thread; the ts of its first message (a file: its id)."""
    channel, thread = split_conversation(item.conversation)
    ref = file_ref(item)
    if ref is not None:
        caption = to_mrkdwn(ref.caption)
        return await files.upload(web, ref, channel, thread, caption, max_upload_bytes)
    text = to_mrkdwn(item.text) or EMPTY_REPLY
    actions = reply_actions(item)
    first_ts: str | None = None
    for start in range(0, len(text), HARD_LIMIT):  # one piece unless escaping exploded
        piece = text[start : start + HARD_LIMIT]
        last = start + HARD_LIMIT >= len(text)
        answer = await web.chat_postMessage(
            channel=channel,
            text=piece,
            thread_ts=thread,
            mrkdwn=True,
            unfurl_links=False,
            blocks=interactive.question_blocks(piece, actions) if actions and last else None,
        )
        first_ts = first_ts or str(answer.get("ts"))
    return first_ts
