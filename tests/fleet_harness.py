"""Several real ``agentbridge up`` nodes against one real PostgreSQL server.

Each node is a ``Bridge`` (its own HOME, state dir, tmux server on a private socket and fake
agents) whose config names the shared ledger URL and its ``[fleet]`` node; the tests read the
database the way any node does, through ``open_ledger``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from agentbridge.ledger.store import Lease, LedgerStore, open_ledger
from agentbridge.models import Event, Message
from agentbridge.supervisor.control import request
from agentbridge.testing import wait_until
from agentbridge.testing.postgres import PostgresServer
from bridge_harness import Bridge

T = TypeVar("T")

#: test lease settings: failover within a few seconds, renewals four times per lease
LEASE = 2.0
BEAT = 0.5


def demo(**extra: Any) -> dict[str, Any]:
    """A fake agent with test-friendly timings."""
    return {"runtime": "demo", "launch_grace": 20, "progress_timeout": 300, **extra}


class Node(Bridge):
    """One supervisor of the fleet."""

    def __init__(
        self,
        root: Path,
        url: str,
        name: str,
        agents: dict[str, dict[str, Any]],
        *,
        fleet: dict[str, Any] | None = None,
        console: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        extra = {
            "ledger": {"url": url},
            "fleet": {"node": name, "lease_seconds": LEASE, "heartbeat_seconds": BEAT}
            | (fleet or {}),
        } | (extra or {})
        super().__init__(root / name, agents=agents, extra=extra, console=console)

    def start_node(self) -> Node:
        """Start and wait until every agent is healthy or on standby (another node's)."""
        self.start(wait_healthy=False)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Until every agent is healthy or on standby (another node's)."""
        self.wait_agents(lambda health: health in ("healthy", "standby"))

    def status(self) -> dict[str, Any]:
        """The live ``status`` snapshot, over the control socket (no CLI start per poll)."""
        answer = asyncio.run(request(self.config, "status", timeout=5.0))
        if answer is None:
            raise AssertionError(f"{self.name}: no supervisor answers\n{self.log_tail()}")
        return answer

    def ingest(self, text: str, agent: str, conversation: str = "cli") -> int:
        """A message for ``agent`` written through the store as any node's channel does."""
        result = db(
            self.url,
            lambda s: s.ingest("local", conversation, "tester", text, agent=agent),
        )
        return result.message.id

    def wait_agents(self, ok: Callable[[str], bool], *names: str, timeout: float = 40) -> None:
        """Until the health of the named (or every) agent satisfies ``ok``."""

        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited ({self.proc.returncode}):\n{self.log_tail()}")
            live = asyncio.run(request(self.config, "status", timeout=5.0))
            if live is None:  # not listening yet
                return False
            agents = live["agents"]
            return all(ok(agents[n]["health"]) for n in names or agents)

        wait_until(check, timeout=timeout, interval=0.1, what=f"{self.name}: agents ready")

    def messages(self) -> list[Message]:
        """Every message, from the shared ledger."""
        return db(self.url, lambda s: s.list_messages(limit=100000))

    def die(self) -> None:
        """The node's machine dies: kill -9 the supervisor and its tmux server (the agents)."""
        self.kill9()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    def pause(self) -> None:
        """SIGSTOP the supervisor (its tmux server and agents keep running)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def injected(self, agent: str) -> set[tuple[int, int]]:
        """(message, attempt) of every envelope this node's fake agent ``agent`` received,
        read from its transcripts (they outlive the pane)."""
        seen: set[tuple[int, int]] = set()
        for path in (self.state_dir / "agents" / agent).rglob("*.jsonl"):
            text = path.read_text(errors="replace")
            for mid, attempt in re.findall(r"agentbridge message=(\d+) attempt=(\d+)", text):
                seen.add((int(mid), int(attempt)))
        return seen


def start_all(*nodes: Node) -> None:
    """Start the nodes together (in this order), then wait until each is ready."""
    for node in nodes:
        node.start(wait_healthy=False)
    for node in nodes:
        node.wait_ready()


def db(url: str, fn: Callable[[LedgerStore], Awaitable[T]]) -> T:
    """Run one read against the shared ledger."""

    async def run() -> T:
        store = await open_ledger(url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def leases(url: str) -> dict[str, Lease]:
    """Every lease by name."""
    return {x.name: x for x in db(url, lambda s: s.list_leases())}


def events(url: str, message_id: int) -> list[Event]:
    """A message's audit trail."""
    return db(url, lambda s: s.events_for(message_id))


def completed_by(url: str, message_id: int) -> str:
    """The actor (``host:pid:…/agent/generation``) that recorded the completion."""
    return next(
        e.actor
        for e in events(url, message_id)
        if e.kind == "transition" and e.to_state == "completed"
    )


def check_history(url: str) -> list[Message]:
    """Every message completed exactly once, nothing injected after its completion; returns
    the messages."""
    messages = db(url, lambda s: s.list_messages(limit=100000))
    for msg in messages:
        trail = events(url, msg.id)
        moves = [e for e in trail if e.kind == "transition" and e.message_id == msg.id]
        done = [i for i, e in enumerate(moves) if e.to_state == "completed"]
        assert msg.state == "completed" and len(done) == 1, (msg, [str(e) for e in moves])
        after = [e for e in moves[done[0] + 1 :] if e.to_state in ("submitted", "accepted")]
        assert not after, f"message {msg.id} injected after its completion: {after}"
    return messages


def stop_postgres(server: PostgresServer) -> None:
    """Kill the server the hard way (``immediate``: no shutdown checkpoint, like a crash)."""
    assert server.root is not None
    server._run("pg_ctl", "-D", str(server.root / "data"), "-m", "immediate", "-w", "stop")


def start_postgres(server: PostgresServer) -> None:
    """Start it again on the same port and socket directory."""
    assert server.root is not None
    port = urlsplit(server.admin_url).port
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1"
        f" -c unix_socket_directories={server.root} -c max_connections=200"
    )
    server._run(
        "pg_ctl", "-D", str(server.root / "data"), "-l", str(server.root / "server.log"),
        "-o", options, "-w", "-t", "60", "start",
    )  # fmt: skip


def wait_for(predicate: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """``wait_until`` with the fleet tests' polling interval."""
    return wait_until(predicate, timeout=timeout, interval=0.05, what=what)


def stop_all(*nodes: Node) -> None:
    """Stop every node (SIGCONT first: a paused one cannot handle SIGTERM)."""
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.resume()
    for node in nodes:
        node.stop()


def pid_of(node: Node) -> int:
    """The supervisor's pid."""
    assert node.proc is not None
    return node.proc.pid


def elapsed(since: float) -> float:
    """Seconds since ``since`` (monotonic)."""
    return time.monotonic() - since


__all__ = [
    "BEAT",
    "LEASE",
    "Node",
    "check_history",
    "completed_by",
    "db",
    "demo",
    "elapsed",
    "events",
    "leases",
    "pid_of",
    "start_all",
    "start_postgres",
    "stop_all",
    "stop_postgres",
    "wait_for",
]
