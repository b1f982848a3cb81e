"""Detect that the host slept (laptop lid) so the supervisor runs one recovery per wake.

Why not watch the wall clock: CPU stalls and NTP steps look like sleeps to a wall-clock-only
detector (Instar #1077: reconnect storms), and duplicate recoveries spawned duplicate replies
(NanoClaw #91/#92). So we compare a clock that runs during suspend with one that stops:

- Linux: ``CLOCK_BOOTTIME - CLOCK_MONOTONIC`` grows by exactly the time slept; immune to NTP.
- macOS: ``CLOCK_MONOTONIC`` (continues in sleep) minus ``CLOCK_UPTIME_RAW`` (stops) – same idea.
- elsewhere: wall minus monotonic, which NTP steps also move, so a jump must persist for a few
  ticks (a step that is corrected again is ignored; backward steps are never sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "WakeDetector"]

log = logging.getLogger(__name__)


class Clock(Protocol):
    """The OS clocks the detector reads (a test double replaces it)."""

    def monotonic(self) -> float:
        """A clock that stops while the host is suspended."""
        ...

    def boottime(self) -> float | None:
        """A steady clock that keeps running during suspend; None when the OS has none."""
        ...

    def wall(self) -> float:
        """Wall-clock time (steps with NTP and manual changes)."""
        ...


class SystemClock:
    """The real clocks of this platform."""

    def __init__(self) -> None:
        if sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
            self._stop_id: int | None = time.CLOCK_MONOTONIC
            self._run_id: int | None = time.CLOCK_BOOTTIME
        elif sys.platform == "darwin" and hasattr(time, "CLOCK_UPTIME_RAW"):
            self._stop_id = time.CLOCK_UPTIME_RAW
            self._run_id = time.CLOCK_MONOTONIC
        else:
            self._stop_id = self._run_id = None

    def monotonic(self) -> float:
        if self._stop_id is None:
            return time.monotonic()
        return time.clock_gettime(self._stop_id)

    def boottime(self) -> float | None:
        return None if self._run_id is None else time.clock_gettime(self._run_id)

    def wall(self) -> float:
        return time.time()


OnWake = Callable[[float], Awaitable[None]]


class WakeDetector:
    """Ticks every ``interval`` s; calls ``await on_wake(slept_seconds)`` once per wake.

    While a recovery (the callback) is still running, further detections are coalesced into it
    (counted in ``coalesced``), never run concurrently: one wake, one recovery.
    """

    def __init__(
        self,
        on_wake: OnWake,
        *,
        clock: Clock | None = None,
        interval: float = 0.5,
        threshold: float = 5.0,
        confirm_ticks: int = 2,
        tolerance: float = 1.0,
    ) -> None:
        self._on_wake = on_wake
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.interval = interval
        self.threshold = threshold
        self.confirm_ticks = confirm_ticks
        self.tolerance = tolerance
        self._base: float | None = None  # last accepted gap between the two clocks
        self._candidate: float | None = None  # fallback path: a jump waiting for confirmation
        self._seen = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self.wakes = 0
        self.coalesced = 0
        self.last_slept = 0.0

    @property
    def uses_boottime(self) -> bool:
        return self._clock.boottime() is not None

    def _gap(self) -> tuple[float, bool]:
        boot = self._clock.boottime()
        if boot is not None:
            return boot - self._clock.monotonic(), True
        return self._clock.wall() - self._clock.monotonic(), False

    def tick(self) -> float | None:
        """Sample the clocks once; returns the seconds slept when this tick detects a wake."""
        gap, steady = self._gap()
        if self._base is None:
            self._base = gap
            return None
        jump = gap - self._base
        if steady:
            self._base = gap
            return self._detected(jump) if jump > self.threshold else None
        return self._fallback(gap, jump)

    def _fallback(self, gap: float, jump: float) -> float | None:
        """Wall-clock path: a jump counts only once it held for ``confirm_ticks`` ticks."""
        assert self._base is not None
        if self._candidate is not None:
            if abs(gap - self._candidate) <= self.tolerance:
                self._seen += 1
                if self._seen >= self.confirm_ticks:
                    slept = self._candidate - self._base
                    self._base, self._candidate = gap, None
                    return self._detected(slept)
                return None
            self._candidate = None  # the clock moved again (a corrected step): start over
        if jump > self.threshold:
            self._candidate, self._seen = gap, 0
        else:
            self._base = gap  # drift, small or backward steps: never a sleep, re-anchor
        return None

    def _detected(self, slept: float) -> float:
        self.last_slept = slept
        if self._recovery is not None and not self._recovery.done():
            self.coalesced += 1
            log.info("wake: host slept ~%.1fs again; recovery already running", slept)
            return slept
        self.wakes += 1
        log.info("wake: host slept ~%.1fs; starting recovery", slept)
        with contextlib.suppress(RuntimeError):  # no running loop: a synchronous caller
            self._recovery = asyncio.get_running_loop().create_task(
                self._run_callback(slept), name="wake-recovery"
            )
        return slept

    async def _run_callback(self, slept: float) -> None:
        try:
            await self._on_wake(slept)
        except Exception:
            log.exception("wake: recovery callback failed")

    async def start(self) -> None:
        """Tick in a background task until ``stop()``."""
        self.tick()
        self._loop_task = asyncio.create_task(self.run(), name="wake-detector")

    async def run(self) -> None:
        """Tick forever (for callers that own the task); cancel to stop."""
        if self._base is None:
            self.tick()
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.tick()
            except Exception:
                log.exception("wake: tick failed")

    async def stop(self) -> None:
        """Stop ticking; a recovery in progress is left to finish (callers may await it)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None

    async def wait_recovery(self) -> None:
        """Wait for the recovery in progress, if any."""
        if self._recovery is not None:
            await asyncio.shield(self._recovery)
