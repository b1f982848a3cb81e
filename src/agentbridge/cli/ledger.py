"""``ledger migrate --to postgresql://…``: move this SQLite ledger into PostgreSQL.

The SQLite ledger's supervisor lock is held for the whole copy: a running supervisor makes it
refuse (its writes would race the copy), and no supervisor can start on the file meanwhile.
Prints one line per table (rows in SQLite, rows now in PostgreSQL); never the URL's password.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from agentbridge.cli.common import CONFIG_HELP, EXIT_ERROR, EXIT_OK, CliError, config_of
from agentbridge.cli.input import add_global_flags
from agentbridge.ledger.migrate import BATCH, migrate_to_postgres
from agentbridge.ledger.postgres.url import is_postgres_url, where
from agentbridge.supervisor.lock import SupervisorError, SupervisorLock


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy the SQLite ledger (``--from``, else the config's) into ``--to``."""
    if not is_postgres_url(args.to):
        raise CliError("ledger migrate: --to must be a postgresql:// URL")
    source = Path(args.source).expanduser() if args.source else config_of(args).ledger.path
    lock = SupervisorLock(source)
    try:
        lock.acquire()
    except SupervisorError as exc:
        raise CliError(f"ledger migrate: {exc}") from None
    try:
        print(f"copying {source} into {where(args.to)}", file=sys.stderr, flush=True)
        counts = asyncio.run(migrate_to_postgres(source, args.to, batch=args.batch))
    finally:
        lock.release()
    short = [c for c in counts if c.target < c.source]
    for c in counts:
        print(f"{c.table:<24} {c.source:>9} in SQLite  {c.target:>9} in PostgreSQL")
    if short:  # an upsert by key cannot come out short: say so loudly if it ever does
        print(f"agentbridge: ledger migrate: {short[0].table} is incomplete", file=sys.stderr)
        return EXIT_ERROR
    print('done: now set  ledger = "postgresql://…"  (that URL) in every node\'s config')
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """``ledger migrate --to URL [--from PATH]``."""
    p = sub.add_parser("ledger", help="ledger maintenance (migrate to PostgreSQL)")
    group = p.add_subparsers(dest="ledger_command", required=True)
    m = group.add_parser(
        "migrate", help="copy this SQLite ledger into PostgreSQL (idempotent, resumable)"
    )
    m.add_argument("--to", required=True, metavar="postgresql://…", help="the target ledger")
    m.add_argument("--from", dest="source", help="the SQLite file (default: ledger.path)")
    m.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    add_global_flags(m, CONFIG_HELP)
    m.set_defaults(func=cmd_migrate)
