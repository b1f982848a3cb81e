"""Inbound: every authorised Telegram message reaches the ledger exactly once, crash or not.

The offset (Telegram's "received") must advance only after the ledger commit; these tests
stop or SIGKILL the poller exactly between the two and check nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from agentbridge.ledger.sqlite import IngestResult, Ledger
from agentbridge.plugin.manager import build_plugin_manager
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT, MALLORY, ledger_ingest

from agentbridge_telegram.intake import NOT_AUTHORISED, TEXT_ONLY
from agentbridge_telegram.testing import FakeBotApi

HERE = Path(__file__).parent


async def rows(ledger: Ledger) -> list[Any]:
    return list(await ledger.list_messages(channel="telegram"))


async def confirmed(fake: FakeBotApi, update_id: int) -> None:
    """Wait until a getUpdates presented an offset past ``update_id`` (Telegram forgot it)."""

    async def check() -> bool:
        return fake.confirmed_offset > update_id

    await async_wait_until(check, timeout=10, what=f"offset past update {update_id}")


async def test_message_is_ingested_then_confirmed(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="hello agent")
    await confirmed(fake, update["update_id"])
    [row] = await rows(ledger)
    msg = update["message"]
    assert (row.conversation, row.sender, row.text) == (str(CHAT), str(ALICE), "hello agent")
    assert row.platform_id == f"{CHAT}:{msg['message_id']}"
    assert row.agent == "demo"
    assert row.meta["update_id"] == update["update_id"]
    assert channel.offset == update["update_id"] + 1


async def test_duplicate_update_is_ingested_once(fake, ledger, start_channel) -> None:
    await start_channel()
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="once")
    fake.redeliver(update)  # Telegram hands the same message out again
    last = fake.redeliver(update)
    await confirmed(fake, last)
    assert [r.text for r in await rows(ledger)] == ["once"]


async def test_caption_ingested_and_textless_message_answered(fake, ledger, start_channel) -> None:
    await start_channel()
    fake.add_message(chat_id=CHAT, user_id=ALICE, caption="a photo caption")
    photo = fake.add_message(chat_id=CHAT, user_id=ALICE)  # a sticker: no text, no caption
    await confirmed(fake, photo["update_id"])
    assert [r.text for r in await rows(ledger)] == ["a photo caption"]

    async def told() -> bool:
        return any(s.text == TEXT_ONLY for s in fake.sent)

    await async_wait_until(told, what="text-only notice")  # not silently dropped


async def test_unauthorised_sender_refused_never_ingested(
    fake, ledger, start_channel, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    channel = await start_channel()
    first = fake.add_message(chat_id=MALLORY, user_id=MALLORY, text="rm -rf /")
    second = fake.add_message(chat_id=MALLORY, user_id=MALLORY, text="please")
    await confirmed(fake, second["update_id"])  # refused updates are confirmed too

    async def told() -> bool:
        return any(s.text == NOT_AUTHORISED for s in fake.sent)

    await async_wait_until(told, what="not-authorised reply")
    assert await rows(ledger) == []
    assert channel.refused == 2
    assert [s.chat_id for s in fake.sent if s.text == NOT_AUTHORISED] == [MALLORY]  # once
    assert f"unauthorised user {MALLORY}" in caplog.text
    assert first["update_id"] < second["update_id"]


async def test_empty_allowed_users_denies_everyone(fake, ledger, start_channel) -> None:
    await start_channel(allowed_users=[], unauthorised_reply=False)
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="me?")
    await confirmed(fake, update["update_id"])
    assert await rows(ledger) == []
    assert fake.sent == []


async def test_stop_between_commit_and_offset_loses_nothing(fake, ledger, start_channel) -> None:
    """The channel dies right after ``ingest`` returned: Telegram re-delivers, one row."""
    committed = asyncio.Event()
    plain = ledger_ingest(ledger)

    async def ingest_then_hang(*args: Any, **kwargs: Any) -> IngestResult:
        await plain(*args, **kwargs)
        committed.set()
        await asyncio.Event().wait()  # never returns: the offset cannot advance
        raise AssertionError

    first = await start_channel(ingest=ingest_then_hang)
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="survive me")
    await asyncio.wait_for(committed.wait(), 10)
    await first.stop()  # the "crash": the task is gone before the next getUpdates
    assert fake.confirmed_offset <= update["update_id"]
    assert [u["update_id"] for u in fake.updates] == [update["update_id"]]

    await start_channel()  # a new instance: Telegram hands the update out again
    await confirmed(fake, update["update_id"])
    assert [r.text for r in await rows(ledger)] == ["survive me"]


async def _spawn_poller(fake, token_file, tmp_path, *extra: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "telegram_poller_proc.py"),
        fake.base_url,
        str(token_file),
        str(tmp_path / "ledger.db"),
        str(tmp_path),
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line.strip() == b"ready"
    return proc


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()


async def test_sigkill_between_commit_and_offset_loses_nothing(
    fake, ledger, token_file, tmp_path
) -> None:
    """A real process, SIGKILLed after the commit and before the offset advance."""
    marker = tmp_path / "ingested"
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="kill -9 me")
    proc = await _spawn_poller(fake, token_file, tmp_path, "--hang-after-ingest")
    try:

        async def committed() -> bool:
            return marker.exists() and marker.read_text().count("\n") >= 1

        await async_wait_until(committed, timeout=15, what="ingest committed in the child")
    finally:
        await _kill(proc)
    assert fake.confirmed_offset <= update["update_id"]  # Telegram still holds it

    proc = await _spawn_poller(fake, token_file, tmp_path)
    try:
        await confirmed(fake, update["update_id"])
    finally:
        await _kill(proc)
    assert marker.read_text().count("\n") == 2  # ingested twice…
    assert [r.text for r in await rows(ledger)] == ["kill -9 me"]  # …stored once


async def test_sigkill_mid_stream_every_message_exactly_once(
    fake, ledger, token_file, tmp_path
) -> None:
    """Kill the poller while a burst is flowing; a restarted one finishes it: no gap, no dup."""
    texts = [f"burst {i}" for i in range(200)]
    for text in texts:
        fake.add_message(chat_id=CHAT, user_id=ALICE, text=text)
    last = fake.updates[-1]["update_id"]
    proc = await _spawn_poller(fake, token_file, tmp_path)
    try:

        async def some() -> bool:
            return len(await rows(ledger)) >= 5

        await async_wait_until(some, timeout=15, what="part of the burst ingested")
    finally:
        await _kill(proc)
    at_kill = len(await rows(ledger))
    proc = await _spawn_poller(fake, token_file, tmp_path)
    try:
        await confirmed(fake, last)
    finally:
        await _kill(proc)
    stored = [r.text for r in await rows(ledger)]
    assert sorted(stored) == sorted(texts)
    assert 0 < at_kill < len(texts), at_kill  # the kill really landed mid-stream


async def test_host_woke_restarts_the_long_poll(fake, ledger, start_channel) -> None:
    channel = await start_channel(poll_timeout=30)

    async def polling() -> bool:
        return fake.calls.count("getUpdates") >= 1

    await async_wait_until(polling, what="first long poll")
    before = fake.calls.count("getUpdates")
    build_plugin_manager().pm.hook.host_woke(slept_seconds=120.0)  # as the supervisor does

    async def repolled() -> bool:
        return fake.calls.count("getUpdates") > before

    await async_wait_until(repolled, timeout=3, what="a fresh getUpdates after wake")
    assert channel.reconnects == 1
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="after sleep")
    await confirmed(fake, update["update_id"])
    assert [r.text for r in await rows(ledger)] == ["after sleep"]


@pytest.mark.parametrize("fail_times", [1])
async def test_ledger_failure_keeps_offset_and_retries(
    fake, ledger, start_channel, fail_times
) -> None:
    """If the commit fails, the update is not confirmed; the next poll brings it back."""
    plain = ledger_ingest(ledger)
    failures = {"left": fail_times}

    async def flaky(*args: Any, **kwargs: Any) -> IngestResult:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk full")
        return await plain(*args, **kwargs)

    await start_channel(ingest=flaky)
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="eventually")
    await confirmed(fake, update["update_id"])
    assert [r.text for r in await rows(ledger)] == ["eventually"]


async def test_malformed_update_never_blocks_the_ones_behind_it(
    fake, ledger, start_channel
) -> None:
    await start_channel()
    fake.add_update({"message": {"message_id": "x", "chat": None}})  # unreadable: skipped
    fake.add_message(chat_id=CHAT, user_id=ALICE, text="lone \ud800 surrogate")
    fake.add_update({"edited_message": {"message_id": 1, "chat": {"id": CHAT}, "text": "e"}})
    last = fake.add_message(chat_id=CHAT, user_id=ALICE, text="still flowing")
    await confirmed(fake, last["update_id"])
    assert [r.text for r in await rows(ledger)] == ["lone ? surrogate", "still flowing"]
