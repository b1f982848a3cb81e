"""A PostgreSQL outage longer than the ledger's connection wait pauses a fleet's work.

Two real supervisors; the real server is stopped (``immediate``: like a crash) for several
times ``[fleet] ledger_timeout`` and started again. Before the fix every ledger call after the
pool's wait failed as "ledger refused" and the agents were restarted; now nothing is claimed
or injected while the server is away, the agents keep running (same pane pid, no restart) and
every message completes once the server is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.ledger.outage import DEFAULT_TIMEOUT
from agentbridge.ledger.postgres.core import PostgresLedger
from agentbridge.ledger.store import LedgerError
from agentbridge.testing.postgres import (
    PostgresServer,
    fresh_database,
    private_server,
)
from fleet_harness import (
    Node,
    check_history,
    demo,
    start_all,
    start_postgres,
    stop_all,
    stop_postgres,
    wait_for,
)

pytestmark = pytest.mark.timeout(150)

TIMEOUT = 1.5  #: ``[fleet] ledger_timeout`` of the test nodes
OUTAGE = 4 * TIMEOUT  #: how long the server stays away


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A private server of this module's own: the test stops and restarts it."""
    with private_server() as started:
        yield started


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    with fresh_database(server, "ab_fleet_outage") as made:
        yield made


def agents(node: Node) -> dict[str, tuple[int, int]]:
    """Each agent's (pane pid, restarts), from the live status."""
    return {n: (a["pid"], a["restarts"]) for n, a in node.status()["agents"].items()}


def test_an_outage_longer_than_the_ledger_timeout_pauses_and_resumes(
    tmp_path: Path, url: str, server: PostgresServer
) -> None:
    fleet = {"ledger_timeout": TIMEOUT}
    a = Node(tmp_path, url, "A", {"a1": demo()}, fleet=fleet)
    b = Node(tmp_path, url, "B", {"b1": demo()}, fleet=fleet)
    try:
        start_all(a, b)
        before = {"A": agents(a), "B": agents(b)}
        busy = [a.ingest(f"#fake:slow={OUTAGE + 3} long turn", "a1", "k1")]
        busy.append(b.ingest(f"#fake:slow={OUTAGE + 3} long turn", "b1", "k2"))
        queued = [a.ingest("queued behind", "a1", "k3"), b.ingest("queued behind", "b1", "k4")]
        for mid in busy:
            a.wait_state(mid, "accepted")
        pasted = (a.injected("a1"), b.injected("b1"))
        stop_postgres(server)
        down = time.monotonic()
        for node in (a, b):  # each node noticed the outage and paused (no status: it waits)
            wait_for(lambda n=node: "work paused until it is back" in n.log_tail(400), "paused")
        while time.monotonic() - down < OUTAGE:
            assert (a.injected("a1"), b.injected("b1")) == pasted, "injected during the outage"
            for node in (a, b):
                assert node.proc is not None and node.proc.poll() is None, node.log_tail()
            time.sleep(0.2)
        start_postgres(server)
        for mid in busy + queued:
            a.wait_state(mid, "completed", timeout=60)
        check_history(url)
        assert {"A": agents(a), "B": agents(b)} == before, "an agent was restarted"
        for node in (a, b):
            log = node.log_tail(400)
            assert "ledger refused" not in log, log
            assert "work resumes" in log, log
        msgs = {m.id: m for m in a.messages()}
        assert all(msgs[mid].attempt == 1 for mid in busy + queued), "nothing was replayed"
    finally:
        stop_all(a, b)


@pytest.mark.asyncio
async def test_a_store_that_does_not_ride_out_fails_fast_and_one_that_does_waits(
    url: str, server: PostgresServer
) -> None:
    """A CLI's store gives up after its timeout (one line); a supervisor's waits and resumes."""
    cli = await PostgresLedger.open(url)
    sup = await PostgresLedger.open(url)
    cli.outage.timeout = 0.5
    sup.outage.ride_out(0.5)
    try:
        stop_postgres(server)
        try:
            began = time.monotonic()
            with pytest.raises(LedgerError, match=r"ledger 127\.0\.0\.1"):
                await cli.list_nodes()
            assert time.monotonic() - began < 10
            waiting = asyncio.create_task(sup.ingest("local", "c", "me", "kept", agent="x"))
            await asyncio.sleep(0)
            deadline = time.monotonic() + 10
            while not sup.outage.down:  # the write noticed the outage: it waits, not fails
                assert time.monotonic() < deadline and not waiting.done(), waiting
                await asyncio.sleep(0.05)
            assert not waiting.done()
        finally:
            start_postgres(server)
        result = await asyncio.wait_for(waiting, 60)
        assert result.created and not sup.outage.down and sup.outage.outages == 1
        # the CLI's pool may still be in its reconnect backoff: give it a CLI's usual wait
        cli.outage.timeout = DEFAULT_TIMEOUT
        assert (await cli.get(result.message.id)).text == "kept"
    finally:
        await cli.close()
        await sup.close()
