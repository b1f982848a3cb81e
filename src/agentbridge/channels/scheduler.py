"""The scheduler channel: ``[schedules.NAME]`` tables become messages at their firing times.

Each firing is ingested with the key ``NAME@<fire time, UTC ISO>``, so the ledger itself
refuses a second copy: a restart, a crash between ingest and bookkeeping, or two passes over the
same minute can never fire twice. What the bridge was down for is decided by ``missed``:
``skip`` fires nothing from the past, ``once`` fires one catch-up for the most recent missed time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from agentbridge.config import Config, ConfigError
from agentbridge.models import OutboxItem
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel, ChannelContext, ChannelLimits, ErrorClass, Receipt

log = logging.getLogger(__name__)

_KEYS = {"cron", "every", "text", "agent", "conversation", "missed", "timezone"}
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: a firing at most this late still counts as on time (loop latency, a quick restart)
GRACE_SECONDS = 30.0
#: the loop re-reads the clock at least this often, so a wall-clock jump (sleep, NTP) is seen
MAX_NAP = 30.0
#: after a failed firing (the ledger is unavailable), wait this long before the next try
RETRY_DELAY = 5.0
STATE_FILE = "scheduler.json"


def fire_key(name: str, fire_time: float) -> str:
    """The idempotency key of one firing: the schedule and the UTC time it was due."""
    iso = datetime.fromtimestamp(fire_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{name}@{iso}"


@dataclass(frozen=True)
class Schedule:
    """One validated ``[schedules.NAME]`` table."""

    name: str
    text: str
    conversation: str
    cron: str | None = None
    every: float | None = None
    agent: str | None = None
    missed: str = "skip"
    timezone: str | None = None  # IANA name; None: the host's local time

    def _dt(self, t: float) -> datetime:
        if self.timezone:
            return datetime.fromtimestamp(t, ZoneInfo(self.timezone))
        return datetime.fromtimestamp(t)  # naive local time: .timestamp() applies local DST

    def next_after(self, t: float) -> float:
        """The first firing strictly after ``t`` (unix seconds)."""
        if self.every is not None:  # anchored to the epoch: the same times across restarts
            return (math.floor(t / self.every) + 1) * self.every
        assert self.cron is not None
        nxt: datetime = croniter(self.cron, self._dt(t)).get_next(datetime)
        return nxt.timestamp()

    def latest_at_or_before(self, t: float) -> float:
        """The most recent firing at or before ``t``."""
        if self.every is not None:
            return math.floor(t / self.every) * self.every
        assert self.cron is not None
        start = self._dt(t) + timedelta(seconds=1)
        it = croniter(self.cron, start)
        while True:
            prev: datetime = it.get_prev(datetime)
            if prev.timestamp() <= t:
                return prev.timestamp()


def _text(table: dict[str, Any], where: str, key: str, default: str | None = None) -> str | None:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where}.{key} must be a non-empty string, not {value!r}")
    return value


def _parse_one(name: str, table: dict[str, Any], agents: Mapping[str, object] | None) -> Schedule:
    where = f"config: schedules.{name}"
    if not _NAME.match(name):
        raise ConfigError(f"{where}: a schedule name may use only letters, digits, _ . -")
    for key in table:
        if key not in _KEYS:
            allowed = ", ".join(sorted(_KEYS))
            raise ConfigError(f"config: unknown key schedules.{name}.{key!r} (allowed: {allowed})")
    cron, every_raw = _text(table, where, "cron"), _text(table, where, "every")
    if (cron is None) == (every_raw is None):
        raise ConfigError(f"{where}: set exactly one of cron or every")
    every = None
    if cron is not None and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
        raise ConfigError(f"{where}.cron must be 5 cron fields like '0 9 * * 1-5': {cron!r}")
    if every_raw is not None:
        match = _EVERY.match(every_raw)
        if not match or int(match[1]) == 0:
            raise ConfigError(f"{where}.every must look like '30s', '15m', '2h' or '1d'")
        every = float(int(match[1]) * _UNIT[match[2]])
    text = _text(table, where, "text")
    if text is None:
        raise ConfigError(f"{where}.text is required: the message to send at each firing")
    missed = _text(table, where, "missed", "skip")
    if missed not in ("skip", "once"):
        raise ConfigError(f"{where}.missed must be 'skip' or 'once', not {missed!r}")
    agent = _text(table, where, "agent")
    if agent is not None and agents is not None and agent not in agents:
        raise ConfigError(f"{where}.agent names no configured agent: {agent!r}")
    tz = _text(table, where, "timezone")
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}.timezone is not a known time zone: {tz!r}") from None
    conversation = _text(table, where, "conversation", f"schedule:{name}")
    assert conversation is not None
    return Schedule(name, text, conversation, cron, every, agent, missed, tz)


def parse_schedules(
    tables: Mapping[str, dict[str, Any]], agents: Mapping[str, object] | None = None
) -> list[Schedule]:
    """Validate ``[schedules.*]``; every error is one line naming the key."""
    return [_parse_one(name, table, agents) for name, table in tables.items()]


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write-then-rename: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class SchedulerChannel:
    """Fires schedules into the ledger; ``clock`` and ``sleep`` are injectable for tests."""

    name = "scheduler"
    singleton = True  #: fleet: a schedule fires once, on the leader
    #: replies to scheduled messages stay in the ledger (console, ``agentbridge show``)
    limits = ChannelLimits(max_message_length=1_000_000)

    def __init__(
        self,
        schedules: list[Schedule],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        grace: float = GRACE_SECONDS,
    ) -> None:
        self.schedules = schedules
        self._clock = clock
        self._sleep = sleep
        self._grace = grace
        self._ctx: ChannelContext | None = None
        self._cursor: dict[str, float] = {}  # per schedule: firings up to here are handled
        self._last_fired: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._retry = False  # the last pass had a failed firing

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Apply the missed policy to what passed while we were down, then run the loop."""
        self._ctx = ctx
        self._last_fired = await asyncio.to_thread(self._load_state)
        for spec in self.schedules:
            last = self._last_fired.get(spec.name)
            if last is None:
                last = await self._last_from_ledger(spec)
            now = self._clock()
            self._cursor[spec.name] = now
            if last is None:
                continue  # first start: nothing of ours was due before
            latest = spec.latest_at_or_before(now)
            if latest <= last:
                continue
            if spec.missed == "once" or now - latest <= self._grace:
                try:
                    await self._fire(spec, latest)
                except Exception:  # rewind: the loop's first pass retries this catch-up
                    log.exception("schedule %s: catch-up firing failed", spec.name)
                    self._cursor[spec.name] = last
            else:
                log.info(
                    "schedule %s: skipping missed firing %s", spec.name, fire_key(spec.name, latest)
                )
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        """Cancel the loop; a firing in progress either committed or will be redone."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def deliver(self, item: OutboxItem) -> str | None:
        """Nobody to send to: the reply stays readable in the ledger."""
        return f"scheduler-{item.id}"

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """``deliver`` cannot fail."""
        return None

    async def receipt(self, receipt: Receipt) -> None:
        """No sender to show receipts to."""

    # ------------------------------------------------------------------ firing

    async def run_due(self) -> list[str]:
        """One pass: fire every schedule whose next firing has come; returns the keys fired.

        A firing later than ``grace`` (the host slept) is a missed one: ``skip`` drops it,
        ``once`` fires only the most recent of those missed.
        """
        fired = []
        self._retry = False
        for spec in self.schedules:
            now = self._clock()
            if spec.next_after(self._cursor[spec.name]) > now:
                continue
            latest = spec.latest_at_or_before(now)
            if spec.missed == "once" or now - latest <= self._grace:
                try:
                    fired.append(await self._fire(spec, latest))
                except Exception:  # leave the cursor: the next pass retries this firing
                    log.exception("schedule %s: could not fire", spec.name)
                    self._retry = True
                    continue
            else:
                log.info(
                    "schedule %s: skipping missed firing %s", spec.name, fire_key(spec.name, latest)
                )
            self._cursor[spec.name] = now
        return fired

    async def _run(self) -> None:
        while True:
            await self.run_due()
            now = self._clock()
            nxt = min(spec.next_after(self._cursor[spec.name]) for spec in self.schedules)
            nap = RETRY_DELAY if self._retry else min(max(nxt - now, 0.05), MAX_NAP)
            await self._sleep(nap)

    async def _fire(self, spec: Schedule, fire_time: float) -> str:
        assert self._ctx is not None
        key = fire_key(spec.name, fire_time)
        extra: dict[str, Any] = {"agent": spec.agent} if spec.agent else {}
        result = await self._ctx.ingest(
            conversation=spec.conversation,
            sender=f"schedule:{spec.name}",
            text=spec.text,
            key=key,
            meta={"schedule": spec.name, "fire_time": fire_time},
            **extra,
        )
        log.info("schedule %s fired (%s, new=%s)", spec.name, key, result.created)
        self._last_fired[spec.name] = max(fire_time, self._last_fired.get(spec.name, 0.0))
        await asyncio.to_thread(self._save_state)
        return key

    # ------------------------------------------------------------------ bookkeeping

    @property
    def state_path(self) -> Path:
        """Where the last firing time of each schedule is kept (``<state_dir>/scheduler.json``)."""
        assert self._ctx is not None
        return self._ctx.state_dir / STATE_FILE

    def _load_state(self) -> dict[str, float]:
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
            return {str(k): float(v) for k, v in raw.get("last_fired", {}).items()}
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError, TypeError, OSError):
            log.warning("scheduler: unreadable %s; falling back to the ledger", self.state_path)
            return {}

    def _save_state(self) -> None:
        _write_atomically(self.state_path, {"last_fired": self._last_fired})

    async def _last_from_ledger(self, spec: Schedule) -> float | None:
        """The newest firing recorded in the ledger: the state file is a cache of this."""
        ledger = self._ctx.ledger if self._ctx else None
        if ledger is None:
            return None
        rows = await ledger.list_messages(channel=self.name, conversation=spec.conversation)
        times = [
            float(m.meta["fire_time"])
            for m in rows
            if m.meta.get("schedule") == spec.name and "fire_time" in m.meta
        ]
        return max(times, default=None)


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Only when schedules are configured; a bad one stops the bridge with one line."""
    if config.schedules:
        register(SchedulerChannel(parse_schedules(config.schedules, config.agents)))
