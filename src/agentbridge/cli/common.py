"""What every command group shares: the one-line error, exit codes, config and ledger access."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge.config import Config, load_config
from agentbridge.ledger.store import LedgerStore, open_ledger

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_FAILED, EXIT_QUARANTINED, EXIT_TIMEOUT, EXIT_INTERRUPTED = 3, 4, 5, 6
CONFIG_HELP = "config file (default: $AGENTBRIDGE_CONFIG or the platform config dir)"


class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def config_of(args: argparse.Namespace) -> Config:
    """The config ``--config`` (or the default place) names."""
    return load_config(Path(args.config).expanduser() if args.config else None)


async def open_store(config: Config) -> LedgerStore:
    """The ledger this config names, opened as the supervisor opens it."""
    return await open_ledger(
        config.ledger.target,
        synchronous=config.ledger.synchronous,
        max_attempts=config.ledger.max_attempts,
    )


def with_ledger(
    fn: Callable[[argparse.Namespace, Config, LedgerStore], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    """A reading command: runs with the ledger open, closed afterwards whatever happens."""

    def run(args: argparse.Namespace) -> int:
        config = config_of(args)

        async def main() -> int:
            ledger = await open_store(config)
            try:
                return await fn(args, config, ledger)
            finally:
                await ledger.close()

        return asyncio.run(main())

    return run


def print_json(data: Any) -> None:
    """``--json`` output: indented, UTF-8 as is."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def age(seconds: float) -> str:
    """``42s`` / ``5m`` / ``1.5h``."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
