"""How long a worker waits before trying again a message the agent's pane refused.

Why: a refused injection (the input box holds text someone typed, no box on screen) releases
the message, and the release's own ledger notification woke the worker at once: it reclaimed,
captured and released again every ~20 ms for as long as the box held text (two ledger writes
and a receipt each time). Now the wait grows (50 ms, doubling, up to 1 s) and is cut short only
when the box is seen empty (the message can go in: the wait starts over from 50 ms next time),
when the worker must stop or restart, or by a delivery (:meth:`HeldBox.reset`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agentbridge.agent.host import AgentSession

__all__ = ["HeldBox"]


class HeldBox:
    """The growing wait of one worker between refused injections."""

    def __init__(self, first: float = 0.05, cap: float = 1.0, look: float = 0.1) -> None:
        """``look``: how often the box is read meanwhile (one capture; no ledger write)."""
        self.first = first
        self.cap = cap
        self.look = look
        self.delay = 0.0
        self.waits = 0  #: refused injections waited out (for tests and status)

    def reset(self) -> None:
        """Delivered, or the box came free: the next refusal waits ``first`` again."""
        self.delay = 0.0

    def next_delay(self) -> float:
        """The wait for this refusal: ``first``, then doubling up to ``cap``."""
        self.delay = self.first if self.delay <= 0 else min(self.cap, self.delay * 2)
        return self.delay

    async def wait(self, session: AgentSession | None, interrupted: Callable[[], object]) -> None:
        """Wait out this refusal; return early when ``session``'s box reads empty, the session
        ended, or ``interrupted()`` (the worker stops or restarts)."""
        self.waits += 1
        deadline = time.monotonic() + self.next_delay()

        def over() -> bool:
            return bool(interrupted()) or session is None or session.ended

        while (left := deadline - time.monotonic()) > 0 and not over():
            await asyncio.sleep(min(self.look, left))
            if over() or session is None or session.injector is None:
                continue
            try:
                box = await session.injector.read_box()
            except Exception:  # the pane went away: the worker's own checks handle it
                return
            if box == "":
                self.reset()
                return
