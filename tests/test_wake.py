"""WakeDetector with a test double of the OS clocks: sleeps are detected once, stalls never."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from agentbridge.supervisor.wake import SystemClock, WakeDetector
from agentbridge.testing import async_wait_until


class FakeClock:
    """The OS clocks, advanced by hand: ``run`` = time passing, ``suspend`` = the host asleep."""

    def __init__(self, has_boottime: bool) -> None:
        self.mono = 1000.0
        self.boot: float | None = 1000.0 if has_boottime else None
        self.wall_t = 1_800_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def boottime(self) -> float | None:
        return self.boot

    def wall(self) -> float:
        return self.wall_t

    def run(self, seconds: float) -> None:  # awake time, or a CPU stall: every clock moves
        self.mono += seconds
        self.wall_t += seconds
        if self.boot is not None:
            self.boot += seconds

    def suspend(self, seconds: float) -> None:  # monotonic stops, the others keep going
        self.wall_t += seconds
        if self.boot is not None:
            self.boot += seconds

    def step_wall(self, seconds: float) -> None:  # NTP or a manual clock change
        self.wall_t += seconds


class Recorder:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.release = asyncio.Event()
        self.block = False

    async def __call__(self, slept: float) -> None:
        self.calls.append(slept)
        if self.block:
            await self.release.wait()


async def settle(det: WakeDetector) -> None:
    await asyncio.sleep(0)
    await det.wait_recovery()


@pytest.mark.parametrize("boot", [True, False], ids=["boottime", "wall-fallback"])
async def test_sleep_detected_once(boot: bool) -> None:
    clock, rec = FakeClock(boot), Recorder()
    det = WakeDetector(rec, clock=clock)
    det.tick()
    clock.run(0.5)
    det.tick()
    clock.suspend(600)
    clock.run(0.5)
    hits = [det.tick()]
    for _ in range(4):  # the following ticks after the wake must not fire again
        clock.run(0.5)
        hits.append(det.tick())
    await settle(det)
    assert rec.calls == [pytest.approx(600)]
    assert det.wakes == 1
    # detected within 2 s of resume: first tick with boottime, after confirm ticks otherwise
    first = next(i for i, h in enumerate(hits) if h is not None)
    assert (first + 1) * 0.5 <= 2.0


@pytest.mark.parametrize("boot", [True, False], ids=["boottime", "wall-fallback"])
async def test_cpu_stall_is_not_a_wake(boot: bool) -> None:
    clock, rec = FakeClock(boot), Recorder()
    det = WakeDetector(rec, clock=clock)
    det.tick()
    clock.run(45)  # the process was frozen 45 s but the host was awake: all clocks moved
    for _ in range(5):
        det.tick()
        clock.run(0.5)
    assert det.wakes == 0 and rec.calls == []


async def test_ntp_steps_do_not_count() -> None:
    # boottime path: wall steps are invisible
    clock, rec = FakeClock(True), Recorder()
    det = WakeDetector(rec, clock=clock)
    det.tick()
    clock.step_wall(3600)
    clock.run(0.5)
    det.tick()
    # wall fallback: a step that is corrected, a backward step, small steps adding up
    clock, rec = FakeClock(False), Recorder()
    det = WakeDetector(rec, clock=clock)
    det.tick()
    clock.step_wall(30)
    clock.run(0.5)
    det.tick()
    clock.step_wall(-30)
    for _ in range(4):
        clock.run(0.5)
        det.tick()
    clock.step_wall(-120)
    for _ in range(3):
        clock.run(0.5)
        det.tick()
    for _ in range(10):
        clock.step_wall(3)
        clock.run(0.5)
        det.tick()
    await asyncio.sleep(0)
    assert det.wakes == 0 and rec.calls == []


async def test_second_wake_during_recovery_is_coalesced() -> None:
    clock, rec = FakeClock(True), Recorder()
    rec.block = True
    det = WakeDetector(rec, clock=clock)
    det.tick()
    clock.suspend(60)
    det.tick()
    await asyncio.sleep(0)
    clock.suspend(60)
    det.tick()
    assert det.wakes == 1 and det.coalesced == 1
    rec.release.set()
    await settle(det)
    assert len(rec.calls) == 1
    clock.suspend(60)  # after the recovery finished, a new sleep is a new wake
    det.tick()
    await settle(det)
    assert len(rec.calls) == 2


async def test_running_loop_detects_with_fake_clock() -> None:
    clock, rec = FakeClock(True), Recorder()
    det = WakeDetector(rec, clock=clock, interval=0.01)
    await det.start()
    try:
        clock.suspend(30)

        async def woke() -> bool:
            return len(rec.calls) == 1

        await async_wait_until(woke, timeout=2.0, what="wake callback")
    finally:
        await det.stop()
    assert det.wakes == 1


def test_system_clock_is_steady_now() -> None:
    clock = SystemClock()
    det = WakeDetector(Recorder(), clock=clock)
    assert det.tick() is None and det.tick() is None
    mono, boot = clock.monotonic(), clock.boottime()
    if boot is not None:
        assert boot >= mono


async def test_run_as_callers_own_task() -> None:
    clock, rec = FakeClock(False), Recorder()
    det = WakeDetector(rec, clock=clock, interval=0.01)
    task = asyncio.create_task(det.run())
    try:

        async def ticked() -> bool:
            return det._base is not None

        await async_wait_until(ticked, timeout=2.0, what="baseline tick")
        clock.suspend(120)

        async def woke() -> bool:
            return rec.calls == [pytest.approx(120)]

        await async_wait_until(woke, timeout=2.0, what="wake via wall fallback")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
