"""Progress while a turn runs (``EditingChannel``): one status message, edited in place.

The core (``supervisor/progress.py``, ``[channels.discord] progress = true``) calls
``edit_message`` at most once per ``progress_interval``: the first call posts the status in
the message's channel, later ones edit that message (Discord's PATCH), so the chat gets one
line that changes, never a new message every few seconds. Best effort: the core logs a
failure and the next update tries again. No mentions can ping from it.
"""

from __future__ import annotations

import asyncio

import discord
from agentbridge.models import Message

from agentbridge_discord.outbound import MAX_MESSAGE_LENGTH
from agentbridge_discord.state import ChannelState


class Progressing(ChannelState):
    """``edit_message`` for the core's progress reporter."""

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Post ``text`` in ``message``'s channel (``status_id`` None) or edit that status
        message to say it; the status message's id."""
        if self.client is None:
            raise RuntimeError("discord channel not started")
        where = self.client.get_partial_messageable(int(message.conversation))
        shown = text[:MAX_MESSAGE_LENGTH] or "…"
        quiet = discord.AllowedMentions.none()
        if status_id is None:
            sent = await asyncio.wait_for(where.send(shown, allowed_mentions=quiet), self.timeout)
            return str(sent.id)
        status = where.get_partial_message(int(status_id))
        await asyncio.wait_for(status.edit(content=shown, allowed_mentions=quiet), self.timeout)
        return status_id
