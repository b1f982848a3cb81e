"""``quarantine``: list the messages recovery gave up on; a human requeues or drops one."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from agentbridge.cli.common import EXIT_OK, EXIT_USAGE, CliError, config_of, open_store, print_json
from agentbridge.cli.write import write


async def _list(args: argparse.Namespace) -> int:
    ledger = await open_store(config_of(args))
    try:
        rows = await ledger.list_messages(state="quarantined")
    finally:
        await ledger.close()
    if args.json:
        print_json([m.to_json() for m in rows])
        return EXIT_OK
    for m in rows:
        print(f"{m.id:>6}  attempt {m.attempt}  {m.channel}:{m.conversation}  {m.reason}")
    if not rows:
        print("no quarantined messages")
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List, requeue or drop quarantined messages (a decision goes through the supervisor)."""
    if args.action == "list":
        return asyncio.run(_list(args))
    if args.id is None:
        raise CliError(f"quarantine {args.action} needs a message id", EXIT_USAGE)
    answer = asyncio.run(write(config_of(args), f"quarantine-{args.action}", id=args.id))
    message = answer["message"]
    print(f"message {message['id']} is now {message['state']}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """``quarantine list|requeue|drop [ID]``."""
    p = sub.add_parser("quarantine", help="list, requeue or drop quarantined messages")
    p.add_argument("action", choices=["list", "requeue", "drop"])
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine)
