"""One write path: the CLI's state-changing commands go through a running supervisor's
control socket, and read the same (output, exit code, error line) when none runs.

Real ``agentbridge up`` subprocesses, real ledger files, the real socket; the supervisor's
log line ``control: <op> for the CLI`` is what only the socket path writes. A supervisor
SIGKILLed after committing a write but before answering (crash point) shows which writes the
CLI may do again: ``send`` (its key finds the row) and nothing it cannot prove.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from agentbridge.ledger.sqlite import Ledger
from agentbridge.supervisor.control import socket_path
from agentbridge.testing import wait_until
from bridge_harness import Bridge

NOWHERE = "nowhere"  # a channel no supervisor runs: its replies stay put, whatever runs


async def _seed(path: Path) -> None:
    """Messages 1, 2 quarantined (agent ``ghost``: no worker claims them); replies 1, 2
    ``unknown`` on a channel nobody runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with await Ledger.open(path) as ledger:
        for n in (1, 2):
            got = await ledger.ingest(NOWHERE, "c", "ana", f"stuck {n}", key=f"k{n}", agent="ghost")
            await ledger.quarantine(got.message.id, "recovery could not prove it safe")
            item = await ledger.enqueue_reply(NOWHERE, "c", f"reply {n}", key=f"r{n}")
            await ledger.reserve_send(item.id)
            await ledger.mark_unknown(item.id, "answer lost")


def seeded(root: Path) -> Bridge:
    bridge = Bridge(root)
    asyncio.run(_seed(bridge.config.ledger.path))
    return bridge


#: every state-changing command, its refusals included, in an order that keeps ids the same
#: whether or not the demo agent completes what ``send`` queued (and no repeat whose answer
#: depends on what the running relay did meanwhile)
SCRIPT: list[tuple[str, ...]] = [
    ("quarantine", "requeue", "1"),
    ("quarantine", "requeue", "1"),  # now queued: IllegalTransition
    ("quarantine", "drop", "2"),
    ("quarantine", "requeue", "999"),  # NotFound
    ("quarantine", "requeue", "abc"),  # bad id: argparse
    ("outbox", "sent", "1"),
    ("outbox", "retry", "2"),
    ("outbox", "sent", "1"),  # already sent: IllegalTransition
    ("outbox", "retry", "999"),
    ("reply", "1", "a note from a script"),
    ("reply", "999", "to nobody"),
    ("send", "--channel", NOWHERE, "--key", "once", "first text"),
    ("send", "--channel", NOWHERE, "--key", "once", "other text"),  # IdempotencyConflict
    ("send", "--channel", NOWHERE, "--key", "once", "first text"),  # the same message
    ("send", "plain text"),
]
#: how many of them reach the supervisor, by op (``requeue abc`` stops at argparse)
REACHED_BY_OP = {
    "quarantine-requeue": 3,
    "quarantine-drop": 1,
    "outbox-sent": 2,
    "outbox-retry": 2,
    "reply": 2,
    "send": 4,
}
REACHED = sum(REACHED_BY_OP.values())


def run_script(bridge: Bridge) -> list[tuple[int, str, str]]:
    return [
        (done.returncode, done.stdout, done.stderr)
        for done in (bridge.cli(*argv, check=False) for argv in SCRIPT)
    ]


def control_lines(bridge: Bridge) -> list[str]:
    text = bridge.log_path.read_text(errors="replace") if bridge.log_path.exists() else ""
    return [line.split("control: ", 1)[1] for line in text.splitlines() if "control: " in line]


def test_writes_go_through_the_supervisor_and_read_the_same_without_it(tmp_path: Path) -> None:
    up = seeded(tmp_path / "up").start()
    try:
        through_socket = run_script(up)
        lines = wait_until(
            lambda: len(found := control_lines(up)) >= REACHED and found,
            timeout=10,
            what="the supervisor's control log lines",
        )
    finally:
        up.stop()
    direct = run_script(seeded(tmp_path / "down"))  # never started: nothing listens

    assert through_socket == direct
    assert direct[0] == (0, "message 1 is now queued\n", "")
    assert direct[1][0] == 1 and direct[1][2].startswith("agentbridge: ") and direct[1][1] == ""
    assert direct[2] == (0, "message 2 is now failed\n", "")
    assert direct[3][0] == 1 and "999" in direct[3][2]
    assert direct[4][0] == 2 and "invalid int value" in direct[4][2]
    assert direct[5:7] == [(0, "reply 1 is now sent\n", ""), (0, "reply 2 is now pending\n", "")]
    assert direct[7][0] == 1 and direct[8][0] == 1
    assert direct[9] == (0, "reply 3 queued (pending)\n", "")
    assert direct[10][0] == 1 and "999" in direct[10][2]
    first, conflict, again, plain = direct[11:]
    assert first == again == (0, "3\n", "")
    assert conflict[0] == 1 and "idempotency key 'once'" in conflict[2]
    assert plain == (0, "4\n", "")

    # only the socket path writes these: one per write that reached the ledger, refusals too
    ops = [line.split(" ", 1)[0] for line in lines]
    for op, count in REACHED_BY_OP.items():
        assert ops.count(op) == count, lines
    assert "quarantine-requeue for the CLI: #1 queued" in lines
    assert "send for the CLI: refused (IdempotencyConflict)" in lines


def raw_request(path: Path, payload: bytes, read: bool = True) -> dict[str, Any] | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        if not read:
            return None
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return dict(json.loads(data))


BAD_REQUESTS = [
    (b"not json\n", "Expecting value"),
    (b"[1, 2]\n", "one JSON object"),
    (b'{"cmd": "quarantine-requeue"}\n', "'id' must be an integer"),
    (b'{"cmd": "quarantine-drop", "id": "1"}\n', "'id' must be an integer"),
    (b'{"cmd": "outbox-retry", "id": true}\n', "'id' must be an integer"),
    (b'{"cmd": "outbox-sent", "id": 1180591620717411303424}\n', "'id' must be an integer"),
    (b'{"cmd": "reply", "id": 1}\n', "'text' must be a string"),
    (b'{"cmd": "send", "agent": ["demo"]}\n', "'agent' must be a string"),
    (b'{"cmd": "send", "agent": "nobody"}\n', "no agent named 'nobody'"),
    (b'{"cmd": "send", "agent": "demo", "channel": "local"}\n', "'conversation' must be"),
    (b'{"cmd": "no-such-thing"}\n', "unknown command"),
]


def test_a_bad_control_request_is_answered_and_the_supervisor_keeps_serving(
    tmp_path: Path,
) -> None:
    bridge = seeded(tmp_path).start()
    try:
        path = socket_path(bridge.config)
        for payload, needle in BAD_REQUESTS:
            answer = raw_request(path, payload)
            assert answer is not None and answer["ok"] is False, (payload, answer)
            assert needle in answer["error"], (payload, answer)
        raw_request(path, b"", read=False)  # connects and hangs up at once
        raw_request(path, b'{"cmd": "quarantine-requeue", "id": 999}\n', read=False)
        assert bridge.status()["supervisor"] is not None  # still serving
        done = bridge.cli("quarantine", "requeue", "1")
        assert done.stdout == "message 1 is now queued\n"
        assert "quarantine-requeue for the CLI: #1 queued" in control_lines(bridge)
        assert bridge.proc is not None and bridge.proc.poll() is None
    finally:
        bridge.stop()


@pytest.mark.parametrize("argv", [("send", "hello"), ("send", "--key", "k9", "hello")])
def test_a_send_whose_answer_was_lost_is_stored_once(tmp_path: Path, argv: tuple[str]) -> None:
    """The supervisor commits the ingest and dies before answering; the CLI's retry on the
    ledger finds the row by its key (made up for a key-less local send): one message."""
    bridge = seeded(tmp_path).start(crash_at="after_control_write")
    try:
        done = bridge.cli(*argv)
        assert bridge.proc is not None and bridge.proc.wait(timeout=10) != 0  # it did die
        assert "send for the CLI: #3 queued" in control_lines(bridge)
        assert done.stdout == "3\n"
        assert [m.id for m in bridge.messages() if m.text == "hello"] == [3]
    finally:
        bridge.stop()


def test_a_lost_answer_to_a_human_decision_is_reported_not_redone(tmp_path: Path) -> None:
    bridge = seeded(tmp_path).start(crash_at="after_control_write")
    try:
        done = bridge.cli("quarantine", "requeue", "1", check=False)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("agentbridge: the supervisor stopped before answering")
        assert "before trying again" in done.stderr and len(done.stderr.splitlines()) == 1
        assert bridge.message(1).state == "queued"  # it had taken effect: not done twice
        events = [e for e in bridge.events(1) if e["to_state"] == "queued"]
        assert len(events) == 2  # the ingest and the one requeue
    finally:
        bridge.stop()
