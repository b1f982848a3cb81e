"""Buttons and slash commands: Block Kit out, ``interactive`` / ``slash_commands`` in.

A permission question (``agentbridge.delivery.actions.reply_actions``) goes out with one
button per answer; the button's ``value`` is the answer text (``"yes abc12"``). A click is
ingested as that text from the clicking user in the message's channel and thread — the same
allowlist and the same ingest as a typed answer, so the core relay checks sender,
conversation and first-answer-wins — and is then acked; the message is edited to say who
answered what and loses its buttons. A click whose answer names no request asked in that
conversation (``click_answers_here``: forged, or a button copied elsewhere) is acked, logged
and dropped: never ingested as agent text.

A slash command (``/agentbridge stop``, or ``/stop`` when the app registers it) is ingested
as the command text (``/stop``) in the channel it was typed in; the core's command parser runs
it and its answer comes back through the outbox. Neither a click nor a command is in the
channel's history, so both carry their own key (``action_ts`` / ``trigger_id``: the same in a
redelivered envelope) and never move the catch-up cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentbridge.delivery.actions import ReplyAction, click_answers_here
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_slack.inbound import SlackMessage

#: Block Kit's limit for a section's text
SECTION_LIMIT = 3000
ACTION_PREFIX = "agentbridge_answer_"
_STYLES = {"yes": "primary", "no": "danger"}


def question_blocks(text: str, actions: tuple[ReplyAction, ...]) -> list[dict[str, Any]]:
    """The message text as a section, then one button per answer."""
    buttons: list[dict[str, Any]] = []
    for index, action in enumerate(actions):
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": action.label},
            "value": action.answer,
            "action_id": f"{ACTION_PREFIX}{index}",
        }
        style = _STYLES.get(action.answer.split(" ", 1)[0])
        if style:
            button["style"] = style
        buttons.append(button)
    return [
        _section(text),
        {"type": "actions", "block_id": "agentbridge_answers", "elements": buttons},
    ]


def answered_blocks(text: str, label: str, user: str) -> list[dict[str, Any]]:
    """The question after a click: its text, then who chose what; no buttons left."""
    note = {"type": "mrkdwn", "text": f"*{label}* — <@{user}>"}
    return [_section(text), {"type": "context", "elements": [note]}]


def _section(text: str) -> dict[str, Any]:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}


@dataclass(frozen=True)
class Click:
    """One button click: the message to ingest and what the edit of the question needs."""

    message: SlackMessage
    label: str
    question_ts: str
    question_text: str


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _kind(channel: str) -> str:
    return "im" if channel.startswith("D") else "channel"


def parse_click(payload: dict[str, Any]) -> Click | None:
    """A ``block_actions`` payload whose action is one of our answer buttons, else None."""
    if payload.get("type") != "block_actions":
        return None
    actions = [a for a in payload.get("actions") or [] if isinstance(a, dict)]
    action = next(
        (a for a in actions if str(a.get("action_id", "")).startswith(ACTION_PREFIX)), None
    )
    container = payload.get("container") if isinstance(payload.get("container"), dict) else {}
    message = payload.get("message") if isinstance(payload.get("message"), dict) else {}
    assert isinstance(container, dict) and isinstance(message, dict)
    channel = _id(payload.get("channel")) or _id(container.get("channel_id"))
    question = container.get("message_ts") or message.get("ts")
    user = _id(payload.get("user"))
    if action is None or channel is None or not isinstance(question, str) or user is None:
        return None
    answer, action_ts = action.get("value"), action.get("action_ts")
    if not isinstance(answer, str) or not isinstance(action_ts, str):
        return None
    thread = container.get("thread_ts") or message.get("thread_ts")
    thread = thread if isinstance(thread, str) and thread else None
    who = payload.get("user") if isinstance(payload.get("user"), dict) else {}
    assert isinstance(who, dict)
    team = _id(payload.get("team")) or _id(who.get("team_id"))
    label = action.get("text", {}).get("text") if isinstance(action.get("text"), dict) else None
    msg = SlackMessage(
        channel=channel,
        ts=action_ts,
        user=user,
        team=team,
        text=answer,
        thread_ts=thread,
        channel_type=_kind(channel),
        mentioned=True,
        meta={"channel": channel, "action_ts": action_ts, "question_ts": question},
        kind="action",
        fixed_conversation=f"{channel}:{thread}" if thread else channel,
        fixed_key=f"{channel}:action:{action_ts}",
    )
    return Click(msg, str(label or answer), question, str(message.get("text") or ""))


async def answers_here(ctx: ChannelContext, conversation: str, answer: str) -> bool:
    """The core's own-chat check (without a ledger to ask, the core's relay decides)."""
    if ctx.ledger is None:
        return True
    return await click_answers_here(ctx.ledger, ctx.name, conversation, answer)


def command_text(command: str, text: str, main_command: str) -> str:
    """``/agentbridge stop`` → ``/stop``; ``/agentbridge`` → ``/help``; ``/stop x`` as typed."""
    text = text.strip()
    if command.lower() == main_command.lower():
        return "/" + text.lstrip("/") if text else "/help"
    return f"{command} {text}" if text else command


def parse_slash(payload: dict[str, Any], main_command: str) -> SlackMessage | None:
    """A ``slash_commands`` payload as the command text in its channel, else None."""
    command, channel = payload.get("command"), payload.get("channel_id")
    user, trigger = payload.get("user_id"), payload.get("trigger_id")
    if not all(isinstance(v, str) and v for v in (command, channel, user, trigger)):
        return None
    assert isinstance(command, str) and isinstance(channel, str) and isinstance(trigger, str)
    raw = payload.get("text") if isinstance(payload.get("text"), str) else ""
    team = payload.get("team_id")
    return SlackMessage(
        channel=channel,
        ts=trigger,
        user=str(user),
        team=team if isinstance(team, str) else None,
        text=command_text(command, str(raw), main_command),
        thread_ts=None,
        channel_type=_kind(channel),
        mentioned=True,
        meta={"channel": channel, "command": command},
        kind="command",
        fixed_conversation=channel,
        fixed_key=f"{channel}:command:{trigger}",
    )
