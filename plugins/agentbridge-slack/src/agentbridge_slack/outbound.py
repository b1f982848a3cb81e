"""One outbox chunk onto Slack: a text (mrkdwn) or a question with its buttons.

Kept apart from ``channel.py`` (which classes and logs what this raises): a permission
question (``reply_actions``) carries Block Kit buttons on its last piece. (An agent's file
is the relay's ``deliver_file``: ``uploads.py``.)
"""

from __future__ import annotations

from agentbridge.delivery.actions import reply_actions
from agentbridge.models import OutboxItem
from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack import interactive
from agentbridge_slack.inbound import split_conversation
from agentbridge_slack.mrkdwn import HARD_LIMIT, to_mrkdwn

EMPTY_REPLY = "(the agent's reply was empty)"


def posted_text(item: OutboxItem) -> str:
    """The first piece of text Slack shows for ``item`` (what ``reconcile`` looks for)."""
    return (to_mrkdwn(item.text) or EMPTY_REPLY)[:HARD_LIMIT]


async def post(web: AsyncWebClient, item: OutboxItem) -> str | None:
    """Post ``item`` into its DM or thread; the ts of its first message."""
    channel, thread = split_conversation(item.conversation)
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
