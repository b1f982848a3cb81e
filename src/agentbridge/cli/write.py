"""The CLI's one write path: through the running supervisor, or the same op on the ledger.

A state-changing command builds one ``control_ops`` request. A running supervisor runs it on
its own ledger and answers the record; when nothing listens (or an older supervisor does not
know the request), the CLI runs the same ``run_op`` itself and then pokes a supervisor that
may have come up meanwhile. Both paths answer the same dict, so the commands print the same.

When the request was sent but no answer came (the supervisor died mid-request), it may have
taken effect: only a request ``retry_safe`` says so (an idempotency key) is done again
directly; any other is reported as one line, never guessed.
"""

from __future__ import annotations

import logging
from typing import Any

from agentbridge.cli.common import CliError, open_store
from agentbridge.config import Config
from agentbridge.supervisor.control import (
    UNKNOWN_COMMAND,
    NoAnswer,
    NoSupervisor,
    call,
    poke_supervisor,
)
from agentbridge.supervisor.control_ops import retry_safe, run_op

__all__ = ["WRITE_TIMEOUT", "write"]

log = logging.getLogger(__name__)

WRITE_TIMEOUT = 30.0  #: a busy supervisor's ledger may queue the write behind a group commit


async def _direct(config: Config, name: str, fields: dict[str, Any]) -> dict[str, Any]:
    ledger = await open_store(config)
    try:
        answer = await run_op(ledger, config, name, fields)
    finally:
        await ledger.close()
    if answer.get("ok"):
        await poke_supervisor(config)
    return answer


async def write(config: Config, name: str, **fields: Any) -> dict[str, Any]:
    """Run write ``name`` (a ``control_ops.OPS`` key); its record, or ``CliError``."""
    answer: dict[str, Any] | None
    try:
        answer = await call(config, name, timeout=WRITE_TIMEOUT, **fields)
        log.debug("%s: answered by the supervisor", name)
    except NoSupervisor:
        answer = None
    except NoAnswer as exc:
        if not retry_safe(name, fields):
            raise CliError(
                f"the supervisor stopped before answering ({exc}); it may or may not have"
                " taken effect: look (`agentbridge show ID` / `agentbridge outbox`) before"
                " trying again"
            ) from exc
        log.debug("%s: no answer (%s); done again directly, its key makes it safe", name, exc)
        answer = None
    if answer is not None and not answer.get("ok") and answer.get("error") == UNKNOWN_COMMAND:
        answer = None  # a supervisor from before this request existed: it did nothing
    if answer is None:
        answer = await _direct(config, name, fields)
    if not answer.get("ok"):
        raise CliError(str(answer.get("error") or f"{name} refused"))
    return answer
