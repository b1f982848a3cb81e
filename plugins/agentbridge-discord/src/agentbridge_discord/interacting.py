"""Interactions in: button clicks (answers to permission questions) and slash commands.

Both become text ingested from the clicking user in the channel they clicked in, under the
same allowlists as messages (no mention needed: an interaction is addressed to the bot). The
interaction is acknowledged only after ``ctx.ingest`` returned (Discord wants the callback
within 3 s; a ledger commit takes milliseconds): a click with UPDATE_MESSAGE (type 7: the
question shows the choice and loses its buttons), a slash command with a short visible echo
(type 4). A refused or failed one gets an ephemeral line, visible to the clicker only.
Discord never redelivers an interaction: a click the ledger did not take is told so and can
be clicked again (the key, the interaction id, keeps a double ack to one row). A click whose
answer names no request asked in that channel (``click_answers_here``: forged, or a button
copied elsewhere) is logged, told it answers nothing, and never ingested as agent text.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import discord
from agentbridge.delivery.actions import click_answers_here
from agentbridge.supervisor.routing import Unroutable

from agentbridge_discord import slash
from agentbridge_discord.components import answer_of
from agentbridge_discord.inbound import admits
from agentbridge_discord.receiving import NOT_AUTHORISED
from agentbridge_discord.state import ChannelState, log

NOT_STORED = "The bridge could not store this; try again in a moment."
STALE = "This button no longer answers anything."


class Interacting(ChannelState):
    """INTERACTION_CREATE → ingest → the interaction callback; and command registration."""

    async def register_commands(self) -> bool:
        """Overwrite the bot's global slash commands (one PUT); False (logged) on failure."""
        if self.client is None or self.client.application_id is None:
            return False
        try:
            await asyncio.wait_for(
                self.client.http.bulk_upsert_global_commands(
                    self.client.application_id, slash.definitions()
                ),
                self.timeout,
            )
        except (discord.HTTPException, OSError, TimeoutError) as exc:
            log.warning("discord: slash commands not registered (typed /commands work): %s", exc)
            return False
        return True

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        """One click or command; never raises (discord.py would only log it)."""
        data: Any = interaction.data or {}
        if interaction.type is discord.InteractionType.component:
            text = answer_of(data.get("custom_id"))
            key = f"click-{interaction.id}"
        elif interaction.type is discord.InteractionType.application_command:
            text = slash.command_text(data)
            key = f"slash-{interaction.id}"
        else:
            return
        channel = interaction.channel
        user = getattr(interaction.user, "id", None)  # MISSING when the payload had no user
        if text is None or channel is None or not isinstance(user, int):
            return  # not ours (another app's component), or no one/nowhere to answer
        if self._ctx is None or self.settings is None:
            return
        self.interactions += 1
        guild = interaction.guild_id
        parent = getattr(channel, "parent_id", None)
        if not admits(self.settings, user, channel.id, guild, parent):
            self._refuse(user, channel.id, guild)
            await self._answer(interaction, NOT_AUTHORISED)
            return
        if key.startswith("click-") and not await self._answers_here(str(channel.id), text):
            log.warning("discord: dropped a click naming no request asked in %s", channel.id)
            await self._answer(interaction, STALE)
            return
        meta = {
            "interaction_id": str(interaction.id),
            "channel_id": str(channel.id),
            "guild_id": None if guild is None else str(guild),
            "thread_parent_id": None if parent is None else str(parent),
            "username": str(interaction.user.name),
        }
        try:
            await self._ctx.ingest(str(channel.id), str(user), text, key=key, meta=meta)
        except Unroutable as exc:
            await self._answer(interaction, f"Not delivered: {exc}")
            return
        except Exception:
            self.ingest_failures += 1
            log.exception("discord: interaction %s not stored", interaction.id)
            await self._answer(interaction, NOT_STORED)
            return
        await self._acknowledge(interaction, text)

    async def _answers_here(self, conversation: str, answer: str) -> bool:
        """The core's own-chat check (without a ledger to ask, the core's relay decides)."""
        ctx = self._ctx
        if ctx is None or ctx.ledger is None:
            return True
        return await click_answers_here(ctx.ledger, ctx.name, conversation, answer)

    async def _acknowledge(self, interaction: discord.Interaction, text: str) -> None:
        """The callback once the ledger has it: the choice on the question, or the echo."""
        who = interaction.user.display_name
        try:
            if interaction.type is discord.InteractionType.component:
                before = interaction.message.content if interaction.message else ""
                label = clicked_label(interaction) or text.split(" ", 1)[0]
                await asyncio.wait_for(
                    interaction.response.edit_message(
                        content=f"{before}\n→ {label} (clicked by {who})"[:2000], view=None
                    ),
                    self.timeout,
                )
            else:
                await asyncio.wait_for(
                    interaction.response.send_message(
                        f"`{text}` (from {who})",
                        allowed_mentions=discord.AllowedMentions.none(),
                    ),
                    self.timeout,
                )
        except Exception as exc:  # stored already: the answer still comes through the outbox
            log.info("discord: interaction %s not acknowledged: %s", interaction.id, exc)

    async def _answer(self, interaction: discord.Interaction, text: str) -> None:
        """An ephemeral line to the clicker only (a refusal, a failure); best effort."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                interaction.response.send_message(text, ephemeral=True), self.timeout
            )


def clicked_label(interaction: discord.Interaction) -> str | None:
    """The label of the button that was clicked ("Allow for this session"), if it shows."""
    data: Any = interaction.data or {}
    wanted = data.get("custom_id")
    for row in getattr(interaction.message, "components", None) or ():  # unset without any
        for child in getattr(row, "children", ()):
            if getattr(child, "custom_id", None) == wanted:
                label = getattr(child, "label", None)
                return label if isinstance(label, str) and label else None
    return None
