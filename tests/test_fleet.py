"""Several supervisors against one real PostgreSQL server: nodes, agent leases with fencing,
victims replayed after a node dies, the leader lease, a server restart.

Every node is a real ``agentbridge up`` subprocess with its own tmux server (private socket)
and fake agents; the database and the agents' own transcripts are the evidence. Leases are
``fleet_harness.LEASE`` seconds so that failover takes a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.testing.postgres import (
    PostgresServer,
    fresh_database,
    private_server,
)
from bridge_harness import Bridge, running_bridge
from fleet_harness import (
    LEASE,
    Node,
    check_history,
    completed_by,
    db,
    demo,
    elapsed,
    events,
    leases,
    pid_of,
    start_all,
    start_postgres,
    stop_all,
    stop_postgres,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A private server of this module's own: one test kills and restarts it."""
    with private_server() as started:
        yield started


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    with fresh_database(server, "ab_fleet") as made:
        yield made


def test_kill9_mid_turn_replays_victims_on_the_other_node_and_the_returning_one(
    tmp_path: Path, url: str
) -> None:
    mover = demo(relocatable=True, node="A")
    a = Node(tmp_path, url, "A", {"a1": demo(), "r": mover})
    b = Node(tmp_path, url, "B", {"b1": demo(), "r": mover})
    c = Node(tmp_path, url, "C", {"r": mover})
    try:
        start_all(a, b, c)  # r is A's: no other node takes a free lease of an agent homed on A
        assert b.status()["agents"]["r"]["health"] == "standby"
        first = a.ingest("#fake:slow=2 pinned to A", "a1")
        moved = b.send("#fake:slow=2 relocatable", "--agent", "r")  # sent on B, run on A
        for mid in (first, moved):
            a.wait_state(mid, "submitted", "accepted")
        a.die()
        died = time.monotonic()
        done = b.wait_state(moved, "completed", timeout=30)
        took = elapsed(died)
        heir = b if leases(url)["agent:r"].node == "B" else c  # B and C race: one wins
        assert done.attempt == 2 and f":{pid_of(heir)}:" in completed_by(url, moved)
        assert took < LEASE + 8, f"replayed {took:.1f}s after A died"
        assert leases(url)["agent:r"].node in ("B", "C")
        other = c if heir is b else b
        assert other.status()["agents"]["r"]["health"] == "standby"
        assert a.message(first).state in ("submitted", "accepted"), "pinned: waits for A"
        a.start_node()  # the same node again: its own lease at once, the victim replayed
        back = a.wait_state(first, "completed", timeout=30)
        assert back.attempt == 2
        assert a.status()["agents"]["r"]["health"] == "standby", "r stays on B"
        later = a.ingest("after the return", "r")
        b.wait_state(later, "completed")
        assert f":{pid_of(heir)}:" in completed_by(url, later), "r stays where it moved"
        check_history(url)
        nodes = {n["name"]: n for n in b.status()["nodes"]}
        assert {n["state"] for n in nodes.values()} == {"alive"}
        assert nodes[heir.name]["agents"] == (["b1", "r"] if heir is b else ["r"])
        assert nodes["A"]["agents"] == ["a1"]
        table = a.cli("status").stdout  # the CLI's table lists the fleet
        assert "NODE" in table and all(f"\n{n} " in table or f"\n{n} *" in table for n in "ABC")
    finally:
        stop_all(a, b, c)


def test_a_paused_node_past_its_lease_is_fenced_off(tmp_path: Path, url: str) -> None:
    mover = demo(relocatable=True, node="A")
    a = Node(tmp_path, url, "A", {"r": mover})
    b = Node(tmp_path, url, "B", {"r": mover})
    try:
        start_all(a, b)
        token_a = leases(url)["agent:r"].token
        first = b.ingest("#fake:slow=2 one", "r", "c1")
        a.wait_state(first, "submitted", "accepted")
        a.pause()  # past its lease: its agent keeps running and ends the turn meanwhile
        lease = wait_for(
            lambda: (x := leases(url)["agent:r"]).node == "B" and x, "B took r over", timeout=15
        )
        assert lease.token > token_a
        b.wait_state(first, "completed", timeout=30)
        # B busy with one, one more queued: the resumed A must claim and paste neither
        second = b.ingest("#fake:slow=3 two", "r", "c2")
        third = b.ingest("three", "r", "c3")
        b.wait_state(second, "submitted", "accepted")
        seen_before = a.injected("r")
        a.resume()
        a.wait_agents(lambda health: health == "standby", "r", timeout=15)
        b.wait_state(third, "completed", timeout=30)
        assert seen_before == a.injected("r") == {(first, 1)}, "A pasted nothing after waking"
        # whatever A tried after waking (its turn's late completion, a heartbeat, a claim)
        # the database refused: no move of A's after the takeover, only refusals
        mine = f":{pid_of(a)}:"
        late = [
            e for m in (first, second, third) for e in events(url, m) if e.at > lease.acquired_at
        ]
        assert not [e for e in late if e.kind == "transition" and mine in e.actor], late
        for e in late:
            if e.kind == "refused":
                assert "node A no longer holds its lease" in e.detail, e
        assert (first, 2) in b.injected("r") and (second, 1) in b.injected("r")
        assert a.message(first).reply and "one" in str(a.message(first).reply)
        check_history(url)
        assert leases(url)["agent:r"].node == "B"
    finally:
        stop_all(a, b)


def test_the_leader_lease_moves_when_the_leader_dies(tmp_path: Path, url: str) -> None:
    once = {"singleton": {"web": True}}  # the console, made a run-once channel
    a = Node(tmp_path, url, "A", {"a1": demo()}, fleet=once, console=True)
    b = Node(tmp_path, url, "B", {"b1": demo()}, fleet=once, console=True)
    try:
        start_all(a, b)
        leader = leases(url)["leader"].node
        first, other = (a, b) if leader == "A" else (b, a)
        assert "web" in first.status()["supervisor"]["channels"]
        assert "web" not in other.status()["supervisor"]["channels"]
        first.die()
        wait_for(
            lambda: "web" in other.status()["supervisor"]["channels"],
            "the other node leads",
            timeout=LEASE + 30,  # how fast: scripts/bench_fleet.py (a loaded CI box is slow)
        )
        assert leases(url)["leader"].node == other.name
        nodes = {n["name"]: n for n in other.status()["nodes"]}
        assert nodes[first.name]["state"] == "dead" and nodes[other.name]["leader"]
        first.start_node()  # back, but not the leader: the other keeps it
        assert "web" not in first.status()["supervisor"]["channels"]
    finally:
        stop_all(a, b)


def test_a_postgres_restart_loses_nothing(tmp_path: Path, url: str, server: PostgresServer) -> None:
    a = Node(tmp_path, url, "A", {"a1": demo()})
    b = Node(tmp_path, url, "B", {"b1": demo()})
    c = Node(tmp_path, url, "C", {"c1": demo()})
    try:
        start_all(a, b, c)
        sent = [
            node.ingest(f"#fake:slow=2 before {i}", agent, f"k{i}")
            for i in range(2)
            for node, agent in ((a, "a1"), (b, "b1"), (c, "c1"))
        ]
        busy = ("claimed", "submitted", "accepted")
        wait_for(
            lambda: sum(m.state in busy for m in a.messages()) >= 2, "turns under way", timeout=20
        )
        tokens = {name: x.token for name, x in leases(url).items()}
        stop_postgres(server)  # mid-turn (a crash: no shutdown checkpoint), and back at once
        start_postgres(server)
        sent.append(a.send("after the restart", "--agent", "a1"))  # the CLI's path too
        sent.append(c.ingest("after the restart", "c1"))
        for mid in sent:
            a.wait_state(mid, "completed", timeout=45)
        check_history(url)
        assert {n["state"] for n in c.status()["nodes"]} == {"alive"}
        after = {name: x.token for name, x in leases(url).items()}
        assert {k: v for k, v in after.items() if k != "leader"} == {
            k: v for k, v in tokens.items() if k != "leader"
        }, "each node renewed its own agents' leases: no owner changed, nothing replayed"
    finally:
        stop_all(a, b, c)


def test_sqlite_stays_one_node_with_its_lock_file_and_no_leases(tmp_path: Path) -> None:
    with running_bridge(tmp_path / "solo") as solo:
        [node] = solo.status()["nodes"]
        assert node["state"] == "alive" and node["pid"] == pid_of(solo)
        assert solo.status()["node"]["leader"]
        assert not db(str(solo.config.ledger.path), lambda s: s.list_leases())
        second = Bridge(tmp_path / "solo")  # the same ledger: the lock file refuses it
        second.config_path = solo.config_path
        done = second.cli("up", check=False, timeout=30)
        assert done.returncode == 1 and "already running" in done.stderr
