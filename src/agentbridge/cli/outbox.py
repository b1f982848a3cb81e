"""``outbox``: the write-ahead replies; a human resends one or closes an ``unknown`` one."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from agentbridge.cli.common import EXIT_OK, EXIT_USAGE, CliError, config_of, open_store, print_json
from agentbridge.cli.write import write

UNKNOWN_HINT = (
    "unknown = may or may not have arrived; never resent on its own. Check the chat,"
    " then `agentbridge outbox retry ID` (resend) or `agentbridge outbox sent ID`."
)


async def _list(args: argparse.Namespace) -> int:
    ledger = await open_store(config_of(args))
    try:
        items = await ledger.list_replies(state=args.state)
    finally:
        await ledger.close()
    if args.json:
        print_json([i.to_json() for i in items])
        return EXIT_OK
    for i in items:
        print(
            f"{i.id:>6}  {i.state:<8} msg {i.message_id}  {i.channel}:{i.conversation}"
            f"  attempts={i.attempts}  {i.last_error or ''}"
        )
    if any(i.state == "unknown" for i in items):
        print(UNKNOWN_HINT)
    return EXIT_OK


def cmd_outbox(args: argparse.Namespace) -> int:
    """List replies; resend one (``retry``: e.g. an ``unknown`` one you checked did not
    arrive) or close an ``unknown`` one you saw arrive (``sent``)."""
    if args.action not in ("retry", "sent"):
        return asyncio.run(_list(args))
    if args.id is None:
        raise CliError(f"outbox {args.action} needs a reply id", EXIT_USAGE)
    answer = asyncio.run(write(config_of(args), f"outbox-{args.action}", id=args.id))
    reply = answer["reply"]
    print(f"reply {reply['id']} is now {reply['state']}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """``outbox [list|retry|sent] [ID]``."""
    p = sub.add_parser("outbox", help="list replies, retry one, or mark an unknown one sent")
    p.add_argument("action", choices=["list", "retry", "sent"], nargs="?", default="list")
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox)
