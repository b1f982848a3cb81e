"""Riding out a ledger server outage: wait for the server instead of failing the work.

A PostgreSQL store fails a call whose connection cannot be had within ``timeout`` seconds
(the pool's wait) or whose connection broke before anything committed. For a one-shot CLI that
is the right answer (one line, exit). A supervisor turns ``wait`` on (``supervisor/fleet.py``):
such a call then waits for the server and runs again, so an outage pauses the work — no claim,
no injection, agents left running, messages durable in the database — and the work resumes
when the server is back. Only a call that may have committed (its COMMIT was sent) still
fails: running it twice could do it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("agentbridge.ledger.outage")

#: the pool's wait for a connection before a call gives up (or, when waiting, logs and retries)
DEFAULT_TIMEOUT = 30.0


class OutagePolicy:
    """What a store does when its server is unreachable (one per store)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.wait = False  #: wait and retry (a supervisor) instead of raising (a CLI)
        self.down_since: float | None = None  #: monotonic start of the current outage
        self.outages = 0  #: outages ridden out (status, tests)

    def ride_out(self, timeout: float | None = None) -> None:
        """From now on wait through outages; ``timeout``: the wait per connection attempt."""
        self.wait = True
        if timeout is not None:
            self.timeout = timeout

    @property
    def down(self) -> bool:
        """The server is unreachable as of the last call."""
        return self.down_since is not None

    async def retry(self, where: str, reason: str) -> bool:
        """A call found no server (nothing committed): True to run it again after a pause,
        False to raise as before."""
        if not self.wait:
            return False
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning("ledger %s unreachable (%s): work paused until it is back", where, reason)
        await asyncio.sleep(min(1.0, self.timeout / 4))
        return True

    def up(self, where: str) -> None:
        """A call went through: an outage, if any, is over."""
        if self.down_since is not None:
            took, self.down_since = time.monotonic() - self.down_since, None
            log.warning("ledger %s is back after %.1fs: work resumes", where, took)


__all__ = ["DEFAULT_TIMEOUT", "OutagePolicy"]
