"""SIGKILL between the ledger commit and the ack: Slack redelivers, the ledger has one row."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from agentbridge.ledger.sqlite import Ledger
from agentbridge.testing import async_wait_until
from slack_helpers import ALICE, DM, write_secret

from agentbridge_slack.testing import APP_TOKEN, BOT_TOKEN, FakeSlack

PROC = Path(__file__).with_name("slack_bridge_proc.py")


async def test_killed_between_ingest_and_ack(fake: FakeSlack, tmp_path: Path) -> None:
    write_secret(tmp_path / "bot", BOT_TOKEN)
    write_secret(tmp_path / "app", APP_TOKEN)
    marker = tmp_path / "ingested"

    async def spawn(*extra: str) -> asyncio.subprocess.Process:
        connects = fake.connects
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PROC), fake.base_url, str(tmp_path), *extra
        )

        async def up() -> bool:
            return fake.connects > connects

        await async_wait_until(up, timeout=20, what="process connected")
        return proc

    first = await spawn("--hang")
    fake.user_message(DM, ALICE, "survive me")
    [env] = fake.envelopes.values()

    async def committed() -> bool:
        return marker.exists() and marker.read_text().count("\n") == 1

    await async_wait_until(committed, timeout=10, what="the commit")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert env.ack_times == []  # died before the ack: Slack will resend
    second = await spawn()
    try:

        async def acked() -> bool:
            return bool(env.ack_times)

        await async_wait_until(acked, timeout=10, what="ack after redelivery")
    finally:
        second.send_signal(signal.SIGTERM)
        await second.wait()
    assert env.retry_attempt == 1
    ledger = await Ledger.open(tmp_path / "ledger.db")
    try:
        rows = await ledger.list_messages(channel="slack")
    finally:
        await ledger.close()
    assert [r.text for r in rows] == ["survive me"]
    assert marker.read_text().count("\n") == 2  # ingested twice, stored once
