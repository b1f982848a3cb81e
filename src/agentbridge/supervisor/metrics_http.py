"""The ``/metrics`` endpoint of a supervisor (``[metrics]`` in the config) and its wiring.

Off by default; when on, it listens on 127.0.0.1 unless ``host`` says otherwise (the counts
name agents and channels: not for the open internet). Its own port, apart from the web
console's, so a Prometheus scrape needs no console token. ``port = 0`` takes a free port
(printed at start, as the console's URL is). Gauges of the queue are read from the ledger at
each scrape, so they are the ledger's truth, not a copy that could drift.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentbridge.config import Config, ConfigError
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.store import LedgerStore
from agentbridge.plugin.manager import PluginHost
from agentbridge.supervisor.dispatcher import AgentWorker
from agentbridge.supervisor.lock import SupervisorError
from agentbridge.supervisor.metrics import LiveCounts, Metrics

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464  #: Prometheus' customary exporter port range


class Supervisor(Protocol):
    """The parts of ``up.Supervisor`` that feed the metrics (no import of ``up``: a circle)."""

    config: Config
    ledger: LedgerStore | None
    host: PluginHost | None
    workers: dict[str, AgentWorker]
    relay: OutboxRelay | None
    wakes: int


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: ``enabled`` (false), ``host`` ("127.0.0.1"), ``port`` (9464)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT


def metrics_config(raw: dict[str, Any]) -> MetricsConfig:
    """Validate the ``[metrics]`` table; ``ConfigError`` with the key at fault."""
    unknown = set(raw) - {"enabled", "host", "port"}
    if unknown:
        raise ConfigError(f"config: unknown key metrics.{sorted(unknown)[0]}")
    enabled, host, port = raw.get("enabled", False), raw.get("host", "127.0.0.1"), raw.get("port")
    if not isinstance(enabled, bool):
        raise ConfigError("config: metrics.enabled must be true or false")
    if not isinstance(host, str) or not host:
        raise ConfigError("config: metrics.host must be a host name or address")
    port = DEFAULT_PORT if port is None else port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError("config: metrics.port must be a port number (0: any free port)")
    return MetricsConfig(enabled=enabled, host=host, port=port)


def attach(supervisor: Supervisor) -> Metrics | None:
    """Feed a new ``Metrics`` from the supervisor's parts (before its workers start), or
    None when ``[metrics]`` is off. Raises ``SupervisorError`` for a bad table."""
    try:
        config = metrics_config(dict(supervisor.config.metrics))
    except ConfigError as exc:
        raise SupervisorError(str(exc)) from None
    if not config.enabled:
        return None
    metrics = Metrics()
    assert supervisor.ledger is not None and supervisor.host is not None
    supervisor.ledger.on_change(metrics.ledger_changed)
    supervisor.host.pm.register(metrics, name="agentbridge-metrics")
    for worker in supervisor.workers.values():
        worker.on_claim = metrics.claimed
        worker.on_turn_end = metrics.turn_ended
    if supervisor.relay is not None:
        supervisor.relay.on_attempt = metrics.reply_attempt
    metrics.registry.register(LiveCounts(supervisor.workers, lambda: supervisor.wakes))
    return metrics


async def serve(supervisor: Supervisor, metrics: Metrics) -> None:
    """Serve ``/metrics`` until cancelled (the supervisor's shutdown cancels its tasks)."""
    config = metrics_config(dict(supervisor.config.metrics))
    ledger = supervisor.ledger
    assert ledger is not None
    newest = await ledger.list_messages(limit=1)
    metrics.start_from(newest[-1].id if newest else 0)

    async def scrape(request: web.Request) -> web.Response:
        metrics.observe_stats(await ledger.stats(), supervisor.workers)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:  # a port in use: the bridge runs on, without metrics
            log.error("metrics: cannot listen on %s:%s: %s", config.host, config.port, exc)
            return
        for address in runner.addresses:
            host, port = address[0], address[1]
            where = f"[{host}]" if ":" in host else host
            print(f"agentbridge: metrics at http://{where}:{port}/metrics", file=sys.stderr)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
