"""The ``agentbridge`` command. Each subcommand is a small function; errors are one line."""

from __future__ import annotations

import argparse
import logging
import sys

from agentbridge import __version__
from agentbridge.cli import admin, ledger, mcp, messages, outbox, quarantine
from agentbridge.cli.common import CONFIG_HELP, EXIT_ERROR, CliError
from agentbridge.cli.input import add_global_flags
from agentbridge.cli.preflight import PreflightError
from agentbridge.config import ConfigError
from agentbridge.ledger.migrations import SchemaTooNew
from agentbridge.ledger.store import LedgerError

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs test); each group adds its subcommands."""
    parser = argparse.ArgumentParser(prog="agentbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"agentbridge {__version__}")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    admin.add_setup_parsers(sub)
    messages.add_parsers(sub)
    quarantine.add_parsers(sub)
    outbox.add_parsers(sub)
    admin.add_admin_parsers(sub)
    mcp.add_parsers(sub)
    ledger.add_parsers(sub)
    for subparser in sub.choices.values():
        add_global_flags(subparser, CONFIG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one subcommand; any expected error is one line on stderr."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except (CliError, ConfigError, SchemaTooNew, LedgerError, PreflightError) as exc:
        print(f"agentbridge: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
