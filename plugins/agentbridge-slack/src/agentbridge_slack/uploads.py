"""The part of ``SlackChannel`` that sends agents' files: ``deliver_file``, ``reconcile_file``.

The relay hands over a file it checked and read (``OutFile``); ``files.upload`` posts it in
three steps with the caption (mrkdwn) as its comment. An upload whose last step lost its
answer is looked up by the file's name in the DM or thread since the row was made: a
message of ours carrying that file means it landed; nothing there means it never did.
"""

from __future__ import annotations

import logging

from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import OutFile, Reconciled
from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack import catchup, files
from agentbridge_slack.errors import to_delivery_error
from agentbridge_slack.inbound import split_conversation
from agentbridge_slack.mrkdwn import to_mrkdwn
from agentbridge_slack.settings import SlackSettings

log = logging.getLogger("agentbridge_slack.channel")
#: our clock vs Slack's ts clock, when looking back for an upload
SKEW_SECONDS = 5.0


class FileSending:
    """Mixed into ``SlackChannel``, whose ``start`` sets these."""

    settings: SlackSettings | None
    bot_user: str | None
    _web: AsyncWebClient | None
    _reader: AsyncWebClient | None
    _threads: set[str]

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload ``file`` into the item's DM or thread; return the file's id."""
        if self._web is None or self.settings is None:
            raise to_delivery_error(ConnectionRefusedError("slack channel not started"))
        channel, thread = split_conversation(item.conversation)
        try:
            file_id = await files.upload(self._web, file, channel, thread, to_mrkdwn(file.caption))
        except Exception as exc:
            error = to_delivery_error(exc)
            log.warning(
                "slack: file %s (reply %s) to %s not delivered (%s): %s",
                file.name,
                item.id,
                item.conversation,
                error.error_class,
                error,
            )
            raise error from None
        if thread is not None:
            self._threads.add(item.conversation)
        return file_id

    async def reconcile_file(self, item: OutboxItem, file: OutFile) -> Reconciled:
        """Our message carrying a file named ``file.name`` since the row was made? Must not
        send; raises (= cannot tell) when Slack cannot be read."""
        if self._reader is None:
            raise RuntimeError("slack channel not started")
        channel, thread = split_conversation(item.conversation)
        since = item.created_at - SKEW_SECONDS
        found = await catchup.find_own(
            self._reader, channel, thread, since, "", self.bot_user, file_name=file.name
        )
        return Reconciled(landed=found is not None, platform_message_id=found)
