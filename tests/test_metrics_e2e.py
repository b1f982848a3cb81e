"""``/metrics`` of a real ``agentbridge up`` with the demo agent, scraped over HTTP, and the
message id as a field of the log file's lines."""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentbridge.config import ConfigError
from agentbridge.supervisor.control import request
from agentbridge.supervisor.logfields import MessageIdFilter, WithFields, for_message
from agentbridge.supervisor.metrics_http import MetricsConfig, metrics_config
from bridge_harness import running_bridge, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_real_messages(tmp_path: Path) -> None:
    extra = {"metrics": {"enabled": True, "port": 0}}
    with running_bridge(tmp_path, extra=extra) as bridge:
        found = wait_for(
            lambda: re.search(
                r"metrics at (http://127\.0\.0\.1:\d+/metrics)", bridge.log_path.read_text()
            ),
            what="the metrics URL printed at start",
        )
        url = found.group(1)
        before = _scrape(url)
        assert _value(before, "agentbridge_restarts_total", agent="demo") == 0
        ids = [bridge.send(f"hello {i}") for i in range(3)]
        for ident in ids:
            bridge.wait_state(ident, "completed")
        wait_for(
            lambda: _value(_scrape(url), "agentbridge_outbox_attempts_total", result="sent") >= 3,
            what="three replies sent, counted",
        )
        after = _scrape(url)
        assert (
            _value(after, "agentbridge_ingested_total")
            - _value(before, "agentbridge_ingested_total")
            == 3
        )
        assert _value(after, "agentbridge_claims_total", agent="demo") == 3
        assert _value(after, "agentbridge_injections_total", agent="demo") == 3
        assert _value(after, "agentbridge_turns_total", agent="demo", outcome="completed") == 3
        assert _value(after, "agentbridge_turn_seconds_count", agent="demo") == 3
        assert _value(after, "agentbridge_receipts_total", status="injected") == 3
        assert _value(after, "agentbridge_queue_depth", agent="demo") == 0
        assert ("agentbridge_oldest_queued_seconds", (("agent", "demo"),)) in after
        assert _value(after, "agentbridge_wakes_total") == 0
        asyncio.run(request(bridge.config, "simulate-wake", slept=120))
        assert _value(_scrape(url), "agentbridge_wakes_total") == 1
        logfile = bridge.home / ".local/state/agentbridge/log/agentbridge.log"
        lines = logfile.read_text().splitlines()
        assert any(
            f"message {ids[0]}: claimed" in line and line.endswith(f"message_id={ids[0]}")
            for line in lines
        ), "\n".join(lines[-20:])


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"port": 70000}, "metrics.port"),
        ({"port": "9464"}, "metrics.port"),
        ({"enabled": "yes"}, "metrics.enabled"),
        ({"prot": 1}, "metrics.prot"),
    ],
)
def test_a_bad_metrics_table_is_refused_by_name(table: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        metrics_config(table)
    assert metrics_config({}) == MetricsConfig(enabled=False, host="127.0.0.1", port=9464)


def test_log_records_carry_the_message_id() -> None:
    """From the house style ``"message %s: …"``, from ``extra``, from an adapter; none else."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.logfields")
    handler = Keep()
    handler.addFilter(MessageIdFilter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("message %s: claimed", 7)
        logger.warning("reply for %s", 8, extra={"message_id": 8})
        for_message(logger, 9).warning("agent said something")
        logger.warning("agent %s: ready", "demo")
    finally:
        logger.removeHandler(handler)
    assert [getattr(r, "message_id", None) for r in records] == [7, 8, 9, None]
    line = WithFields("%(message)s").format(records[0])
    assert line == "message 7: claimed message_id=7"
