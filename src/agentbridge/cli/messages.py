"""Messages: ``send``, ``wait``, ``reply``, ``messages``, ``show``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

from agentbridge.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_QUARANTINED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
    age,
    config_of,
    print_json,
    with_ledger,
)
from agentbridge.cli.input import field_arg, text_arg
from agentbridge.cli.write import write
from agentbridge.config import Config
from agentbridge.ledger.store import LedgerStore
from agentbridge.models import Message
from agentbridge.states import MessageState

#: the channel without a platform: a made-up key there is no platform id a reply could quote
LOCAL = "local"


def cmd_send(args: argparse.Namespace) -> int:
    """Ingest a message (through the supervisor when it runs); print its id once durable."""
    config = config_of(args)
    text = text_arg(args.text)
    if not text.strip():
        raise CliError("refusing to send an empty message")
    agent = args.agent
    if agent is None:  # routes pick it (and strip an @mention); a /use choice applies
        from agentbridge.supervisor.commands import Unroutable, route_choice

        try:
            decision = route_choice(config, args.channel, args.conversation, args.sender, text)
        except Unroutable as exc:
            raise CliError(str(exc)) from exc
        agent, text = decision.agent, decision.text
    if agent not in config.agents:
        raise CliError(f"no agent named {agent!r} (configured: {', '.join(config.agents)})")
    channel = field_arg(args.channel)
    key = None if args.key is None else field_arg(args.key)
    if key is None and channel == LOCAL:  # a lost answer can then be retried without a twin
        key = f"cli-send:{uuid.uuid4().hex}"
    answer = asyncio.run(
        write(
            config,
            "send",
            channel=channel,
            conversation=field_arg(args.conversation),
            sender=field_arg(args.sender),
            text=text,
            key=key,
            agent=agent,
            priority=1 if args.control else 0,
        )
    )
    if "permission" in answer:  # the relay took it as an answer: no message was stored
        from agentbridge.supervisor.permission_send import answer_line

        print(answer_line(answer["permission"], args.sender), file=sys.stderr)
    print(answer["message"]["id"])
    return EXIT_OK


@with_ledger
async def cmd_messages(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """List messages."""
    if args.state and args.state not in {s.value for s in MessageState}:
        states = ", ".join(s.value for s in MessageState)
        raise CliError(f"unknown state {args.state!r} (one of: {states})", EXIT_USAGE)
    messages = await ledger.list_messages(state=args.state, limit=args.limit)
    if args.json:
        print_json([m.to_json() for m in messages])
        return EXIT_OK
    now = time.time()
    print(f"{'ID':>6}  {'STATE':<11} {'AGENT':<10} {'FROM':<16} {'AGE':>5}  TEXT")
    for m in messages:
        first = m.text.splitlines()[0] if m.text else ""
        sender = f"{m.channel}:{m.sender}"[:16]
        print(
            f"{m.id:>6}  {m.state:<11} {m.agent:<10} {sender:<16} {age(now - m.created_at):>5}"
            f"  {first[:60]}"
        )
    return EXIT_OK


def _show_text(
    message: Message, events: list[Any], replies: list[Any], permissions: list[Any]
) -> None:
    print(f"message {message.id}  [{message.state}]  attempt {message.attempt}")
    print(
        f"  channel {message.channel}  conversation {message.conversation}  "
        f"sender {message.sender}  agent {message.agent}"
    )
    if message.reason:
        print(f"  reason: {message.reason}")
    print("  text:")
    for line in message.text.splitlines()[:20]:
        print(f"    {line}")
    if message.reply is not None:
        print("  reply:")
        for line in message.reply.splitlines()[:40]:
            print(f"    {line}")
    print("  history:")
    for e in events:
        stamp = time.strftime("%H:%M:%S", time.localtime(e.at)) + f".{int(e.at % 1 * 1000):03d}"
        move = f"{e.from_state or ''} -> {e.to_state}" if e.to_state else e.kind
        print(f"    {stamp}  {e.actor:<10} {move:<24} {e.detail}")
    for r in replies:
        print(
            f"  reply #{r.id}: {r.state} to {r.channel}:{r.conversation}"
            f" attempts={r.attempts} {r.last_error or ''}"
        )
    for p in permissions:
        who = f" by {p.answered_by}" if p.answered_by else ""
        scope = " for this session" if p.always else ""
        print(f"  permission {p.short_id}: {p.tool} {p.summary} — {p.state}{scope}{who}")


@with_ledger
async def cmd_show(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """One message, its history and its reply."""
    message = await ledger.get(args.id)
    events = await ledger.events_for(args.id)
    replies = await ledger.list_replies(message_id=args.id)
    permissions = await ledger.list_permissions(message_id=args.id)
    if args.json:
        data = message.to_json()
        data["events"] = [e.to_json() for e in events]
        data["outbox"] = [r.to_json() for r in replies]
        data["permissions"] = [p.to_json() for p in permissions]
        print_json(data)
    else:
        _show_text(message, events, replies, permissions)
    return EXIT_OK


@with_ledger
async def cmd_wait(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """Wait until a message is completed, failed, quarantined or interrupted; print the reply."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while True:
        message = await ledger.get(args.id)
        if message.state == MessageState.COMPLETED:
            print(message.reply or "")
            return EXIT_OK
        if message.state == MessageState.FAILED:
            print(f"message {args.id} failed: {message.reason}", file=sys.stderr)
            return EXIT_FAILED
        if message.state == MessageState.QUARANTINED:
            print(f"message {args.id} quarantined: {message.reason}", file=sys.stderr)
            return EXIT_QUARANTINED
        if message.state == MessageState.INTERRUPTED:
            print(f"message {args.id} {message.reason}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if deadline is not None and time.monotonic() > deadline:
            print(f"message {args.id} still {message.state} after {args.timeout}s", file=sys.stderr)
            return EXIT_TIMEOUT
        await asyncio.sleep(0.05)


def cmd_reply(args: argparse.Namespace) -> int:
    """An agent (or a script) queues an extra reply to a message's conversation."""
    text = text_arg(args.text)
    answer = asyncio.run(write(config_of(args), "reply", id=args.id, text=text, key=args.key))
    reply = answer["reply"]
    print(f"reply {reply['id']} queued ({reply['state']})")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """``send``, ``wait``, ``reply``, ``messages``, ``show`` (in the help's order)."""
    p = sub.add_parser("send", help="send a message through the local channel")
    p.add_argument("--channel", default=LOCAL)
    p.add_argument("--conversation", default="cli")
    p.add_argument("--sender", default=os.environ.get("USER", "cli"))
    p.add_argument("--key", help="idempotency key (same key + same text = same message)")
    p.add_argument("--agent", help="agent name (default: by routes)")
    p.add_argument("--control", action="store_true", help="use the priority lane")
    p.add_argument("text", help="the message, or - to read stdin")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("wait", help="wait for a message's reply; exit code says how it ended")
    p.add_argument("id", type=int)
    p.add_argument("--timeout", type=float, default=None)
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("reply", help="queue an extra reply to a message's conversation")
    p.add_argument("id", type=int)
    p.add_argument("text", help="the reply, or - to read stdin")
    p.add_argument("--key", help="idempotency key: the same key is never sent twice")
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser("messages", help="list messages")
    states = ", ".join(s.value for s in MessageState)
    p.add_argument("--state", help=f"only messages in this state ({states})")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_messages)

    p = sub.add_parser("show", help="one message with its history and reply")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
