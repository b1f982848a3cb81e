"""kill -9 at random moments never loses an acknowledged message or leaves an illegal row.

A real child process (``ledger_kill9_child.py``) ingests and transitions messages flat out and
prints each ack; the parent SIGKILLs it a random 5–60 ms after it is ready (sometimes while it
is still opening the file), opens the ledger as a restarted bridge would, and checks every ack
and every row. More than 200 kills, alternating synchronous=FULL and NORMAL in the child.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from agentbridge.ledger.sqlite import Ledger
from agentbridge.states import IN_FLIGHT, MessageState

CHILD = Path(__file__).with_name("ledger_kill9_child.py")
SRC = Path(__file__).resolve().parents[1] / "src"
KILLS = 210
FULL_EVERY = 30


async def run_child_and_kill(path: Path, mode: str, owner: str, rng: random.Random) -> list[str]:
    """Start the child, SIGKILL it at a random moment; return its complete ack lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(path),
        mode,
        owner,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # independent of how the package is installed (others may reinstall it meanwhile)
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    if rng.random() < 0.1:
        # sometimes while it is still starting: opening, migrating, requeueing victims
        await asyncio.sleep(rng.uniform(0.0, 0.15))
    else:
        ready = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        assert ready == b"ready\n", (ready, await proc.stderr.read())
        await asyncio.sleep(rng.uniform(0.005, 0.060))  # the random moment of the kill
    proc.send_signal(signal.SIGKILL)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == -signal.SIGKILL, f"child died on its own: {err.decode()}"
    lines = out.decode().split("\n")
    return [line for line in lines[:-1] if line and line != "ready"]  # whole lines only


class Checker:
    """Holds the ledger to the acks after each kill.

    Each round checks the new acks, the rows the new audit rows touched, and the in-flight
    invariants; every ``FULL_EVERY`` rounds (and at the end) every row and ack is checked
    again, which also catches a row that changed without an audit row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acked: dict[int, str] = {}
        self.done: set[int] = set()
        self.last_event = 0

    async def check(self, new_acks: dict[int, str], new_done: set[int], full: bool) -> None:
        for mid, key in new_acks.items():
            assert self.acked.setdefault(mid, key) == key, f"id {mid} acked for two keys"
        self.done |= new_done
        async with await Ledger.open(self.path) as led:
            since = 0 if full else self.last_event
            events = await led.events_since(since, limit=10**8)
            if events:
                self.last_event = max(self.last_event, events[-1].id)
            if full:
                rows = {m.id: m for m in await led.list_messages(limit=10**8)}
                acks, done = self.acked, self.done
            else:
                touched = {e.message_id for e in events if e.message_id is not None}
                wanted = touched | set(new_acks) | new_done
                rows = {
                    i: await led.get(i) for i in sorted(wanted) if i in self.acked or i in touched
                }
                acks, done = new_acks, new_done
            in_flight = [
                m for state in IN_FLIGHT for m in await led.list_messages(state=state, limit=10**6)
            ]
            replies = {
                r.idem_key: r
                for r in await led.list_replies(limit=10**8)
                if r.message_id in rows and rows[r.message_id].state == MessageState.COMPLETED
            }
        for mid, key in acks.items():
            assert mid in rows, f"acknowledged message {mid} ({key}) is lost"
            assert (rows[mid].platform_id, rows[mid].text) == (key, f"text of {key} ✓ \U0001f600")
        for mid in done:
            assert rows[mid].state == MessageState.COMPLETED, f"acked completion of {mid} lost"
        first: dict[int, str | None] = {}
        last: dict[int, str | None] = {}
        for e in events:
            if e.kind == "transition" and e.message_id is not None:
                first.setdefault(e.message_id, e.to_state)
                last[e.message_id] = e.to_state
        for m in rows.values():
            assert m.state in set(MessageState)
            if full:
                assert first.get(m.id) == "queued", f"message {m.id} has no ingest event"
            if m.id in last:
                assert last[m.id] == m.state, f"message {m.id}: row and audit trail disagree"
            if m.state in IN_FLIGHT:
                assert m.lease_owner and m.lease_expires_at is not None, m
            else:
                assert m.lease_owner is None and m.lease_expires_at is None, m
            if m.state == MessageState.COMPLETED:
                assert m.reply == f"reply to {m.id}"
                assert replies[f"reply:{m.id}"].text == m.reply, "completion without its reply"
            if m.state == MessageState.QUARANTINED:
                assert m.reason and "attempts" in m.reason
            assert 1 <= m.attempt <= 3
        conversations = Counter((m.channel, m.conversation) for m in in_flight)
        assert max(conversations.values(), default=0) <= 1, "two in flight in a conversation"
        assert len(in_flight) <= 1, "exclusive agent A has two in flight"
        for m in in_flight:
            assert m.lease_owner and m.lease_expires_at is not None, m


async def test_kill9_never_loses_an_acknowledged_message(tmp_path: Path) -> None:
    checker = Checker(tmp_path / "ledger.db")
    rng = random.Random()
    started = time.monotonic()
    for kill in range(KILLS):
        mode = "full" if kill % 2 == 0 else "normal"
        new_acks: dict[int, str] = {}
        new_done: set[int] = set()
        for line in await run_child_and_kill(checker.path, mode, f"child{kill}", rng):
            kind, mid, *rest = line.split(" ")
            if kind == "I":
                assert new_acks.setdefault(int(mid), rest[0]) == rest[0], "one id, two keys"
            else:
                assert kind == "D", line
                new_done.add(int(mid))
        full = kill % FULL_EVERY == FULL_EVERY - 1 or kill == KILLS - 1
        await checker.check(new_acks, new_done, full)
    elapsed = time.monotonic() - started
    # the test means something only if the children got real work done between kills
    # (typically ~100 acked ingests and ~4 completions per kill; the floors allow a loaded box)
    assert len(checker.acked) > 5 * KILLS, (len(checker.acked), elapsed)
    assert len(checker.done) > KILLS // 4, len(checker.done)
    print(
        f"{KILLS} kills, {len(checker.acked)} acked ingests,"
        f" {len(checker.done)} acked completions, {elapsed:.1f}s"
    )
