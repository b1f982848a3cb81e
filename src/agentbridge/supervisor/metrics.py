"""Prometheus metrics of one supervisor, fed by what already happens: receipts, claims and
turn ends, outbox attempts and ledger changes; gauges read from the ledger at scrape time.

Why: a fleet's operator needs queue depth, turn latency and failure rates from every node
without reading logs. Each supervisor has its own ``CollectorRegistry`` (no process-global
default registry: two supervisors in one test process never share a counter). Observers run
on the event loop and only bump counters: they never block or raise into their caller.
``metrics_http`` serves ``registry`` at ``/metrics`` and wires the feeds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agentbridge.agent.turn import InFlight
from agentbridge.kinds import ChangeKind, ReceiptKind
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Receipt

#: turn latency buckets (seconds): agent turns take from seconds to many minutes
TURN_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))
#: claimed messages remembered for their agent and claim time (older ones are forgotten)
_REMEMBER = 10_000


class RestartSource(Protocol):
    """What the restart counter reads from each agent worker."""

    restart_count: int


class Metrics:
    """The registry and the observers that feed it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested = Counter(
            "agentbridge_ingested", "New messages committed to the ledger", registry=r
        )
        self.claims = Counter(
            "agentbridge_claims", "Messages claimed by this supervisor", ["agent"], registry=r
        )
        self.injections = Counter(
            "agentbridge_injections", "Prompts submitted into an agent's pane", ["agent"],
            registry=r,
        )  # fmt: skip
        self.turns = Counter(
            "agentbridge_turns", "Turns ended, by outcome (completed = a completion)",
            ["agent", "outcome"], registry=r,
        )  # fmt: skip
        self.failures = Counter(
            "agentbridge_failures", "Failures by class (a turn's outcome, a reply's result)",
            ["class"], registry=r,
        )  # fmt: skip
        self.receipts = Counter(
            "agentbridge_receipts", "Receipts shown to senders, by status", ["status"],
            registry=r,
        )  # fmt: skip
        self.turn_seconds = Histogram(
            "agentbridge_turn_seconds", "Seconds from a claim to the end of its turn",
            ["agent"], buckets=TURN_BUCKETS, registry=r,
        )  # fmt: skip
        self.outbox_attempts = Counter(
            "agentbridge_outbox_attempts", "Reply delivery attempts, by result", ["result"],
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "agentbridge_queue_depth", "Messages queued per agent", ["agent"], registry=r
        )
        self.oldest_queued = Gauge(
            "agentbridge_oldest_queued_seconds", "Age of the oldest queued message per agent",
            ["agent"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "agentbridge_in_flight", "Messages claimed and not finished, per agent", ["agent"],
            registry=r,
        )  # fmt: skip
        self.quarantined = Gauge(
            "agentbridge_quarantined", "Messages quarantined per agent", ["agent"], registry=r
        )
        self._claimed: dict[int, tuple[str, float]] = {}  # message id → (agent, claim time)
        self._high: int | None = None  # the newest message id known at start
        self._seen: set[int] = set()

    # ------------------------------------------------------------------ feeds

    def start_from(self, newest_id: int) -> None:
        """Messages up to ``newest_id`` existed before this supervisor: not new ingests."""
        self._high = newest_id

    def ledger_changed(self, kind: ChangeKind, ident: int) -> None:
        """A committed change; a message id not seen since the start is a new ingest."""
        if kind != ChangeKind.MESSAGE or self._high is None or ident <= self._high:
            return
        if ident not in self._seen:
            self._seen.add(ident)
            self.ingested.inc()
            if len(self._seen) > _REMEMBER:
                floor = max(self._seen) - _REMEMBER // 2
                self._seen = {i for i in self._seen if i >= floor}
                self._high = max(self._high, floor - 1)

    def claimed(self, message: Message) -> None:
        self.claims.labels(message.agent).inc()
        self._claimed[message.id] = (message.agent, time.monotonic())
        if len(self._claimed) > _REMEMBER:
            for old in list(self._claimed)[: _REMEMBER // 2]:
                del self._claimed[old]

    def turn_ended(self, flight: InFlight) -> None:
        message = flight.message
        outcome = str(flight.outcome.value) if flight.outcome is not None else "unknown"
        self.turns.labels(message.agent, outcome).inc()
        if outcome not in ("completed", "aborted"):
            self.failures.labels(f"turn_{outcome}").inc()
        claimed = self._claimed.pop(message.id, None)
        if claimed is not None:
            self.turn_seconds.labels(message.agent).observe(time.monotonic() - claimed[1])

    def reply_attempt(self, item: OutboxItem, result: str) -> None:
        self.outbox_attempts.labels(result).inc()
        if result != "sent":
            self.failures.labels(f"reply_{result}").inc()

    @hookimpl
    def message_receipt(self, receipt: Receipt) -> None:
        """The ``message_receipt`` hook: receipts by status; injections by agent."""
        self.receipts.labels(str(receipt.status)).inc()
        if receipt.status == ReceiptKind.INJECTED:
            agent, _ = self._claimed.get(receipt.message_id, ("", 0.0))
            self.injections.labels(agent).inc()

    # ------------------------------------------------------------------ scrape time

    def observe_stats(self, stats: Mapping[str, Any], agents: Iterable[str]) -> None:
        """Queue gauges from ``LedgerStore.stats()`` (every configured agent, 0 when idle)."""
        per_agent: Mapping[str, Mapping[str, Any]] = stats.get("agents", {})
        for agent in {*agents, *per_agent}:
            counts = per_agent.get(agent, {})
            self.queue_depth.labels(agent).set(counts.get("queued", 0))
            self.oldest_queued.labels(agent).set(counts.get("oldest_queued_age") or 0)
            self.in_flight.labels(agent).set(counts.get("in_flight", 0))
            self.quarantined.labels(agent).set(counts.get("quarantined", 0))


class LiveCounts(Collector):
    """Restarts per agent and host wakes, read from the supervisor when scraped (they are
    counted where they happen already; copying them would be a second truth)."""

    def __init__(self, workers: Mapping[str, RestartSource], wakes: Any) -> None:
        self._workers = workers
        self._wakes = wakes  #: a callable returning the supervisor's wake count

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "agentbridge_restarts", "Agent session restarts", labels=["agent"]
        )
        for name, worker in self._workers.items():
            restarts.add_metric([name], worker.restart_count)
        yield restarts
        wakes = CounterMetricFamily("agentbridge_wakes", "Host wakes from sleep detected")
        wakes.add_metric([], self._wakes())
        yield wakes

    def describe(self) -> Iterator[Metric]:
        return iter(())
