"""SIGKILL between the ledger commit and the ack: Lark pushes the event again, one row."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM, write_secret

from agentbridge_lark.testing import APP_SECRET, FakeLark

PROC = Path(__file__).with_name("lark_bridge_proc.py")


async def test_killed_between_ingest_and_ack(fake: FakeLark, tmp_path: Path) -> None:
    write_secret(tmp_path / "secret", APP_SECRET)
    marker = tmp_path / "ingested"

    async def spawn(*extra: str) -> asyncio.subprocess.Process:
        connects = fake.connects
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PROC), fake.base_url, str(tmp_path), *extra
        )

        async def up() -> bool:
            return fake.connects > connects

        await async_wait_until(up, timeout=30, what="process connected")
        return proc

    first = await spawn("--hang")
    message_id = await fake.user_message(DM, ALICE, "survive me")
    event = fake.event_for(message_id)

    async def committed() -> bool:
        return marker.exists() and marker.read_text().count("\n") == 1

    await async_wait_until(committed, timeout=10, what="the commit")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert event.ack_times == [] and event.nacks == 0  # died before the ack: Lark resends
    second = await spawn()
    try:

        async def acked() -> bool:
            return bool(event.ack_times)

        await async_wait_until(acked, timeout=15, what="ack after the push again")
    finally:
        second.send_signal(signal.SIGTERM)
        await second.wait()
    assert event.pushes >= 2
    ledger = await Ledger.open(tmp_path / "ledger.db")
    try:
        rows = await ledger.list_messages(channel="lark")
    finally:
        await ledger.close()
    assert [r.text for r in rows] == ["survive me"]
    # ingested twice (the redelivered event, maybe the catch-up too), stored once
    assert marker.read_text().count("\n") >= 2
