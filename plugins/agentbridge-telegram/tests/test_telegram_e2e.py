"""The whole bridge with Telegram: ``agentbridge up`` (demo agent in tmux) ↔ the fake Bot API.

Loaded through the real entry point in a real supervisor process: a Telegram message reaches
the agent, the agent's answer comes back as a reply quoting it, receipts show on the message,
and a stranger's message never reaches the agent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT, MALLORY

from agentbridge_telegram.testing import FakeBotApi

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@pytest.fixture
async def bridge(fake: FakeBotApi, tmp_path: Path) -> AsyncIterator[Path]:
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir()
    socket = f"abtg-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\ntmux_socket = "{socket}"\n'
        f'[ledger]\npath = "{state / "ledger.db"}"\n'
        "[console]\nenabled = false\n"
        '[agents.demo]\nruntime = "demo"\n'
        f'[channels.telegram]\nbase_url = "{fake.base_url}"\nallowed_users = [{ALICE}]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
    env.update(
        HOME=str(home),
        AGENTBRIDGE_CONFIG=str(config),
        AGENTBRIDGE_TELEGRAM_TOKEN=fake.token,
        AGENTBRIDGE_LOAD_PLUGINS="telegram",
    )
    log_path = tmp_path / "bridge.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentbridge.cli", "up", env=env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield log_path
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        kill = await asyncio.create_subprocess_exec(
            "tmux", "-L", socket, "kill-server", stderr=asyncio.subprocess.DEVNULL
        )
        await kill.wait()


async def test_round_trip_through_the_real_bridge(fake: FakeBotApi, bridge: Path) -> None:
    stranger = fake.add_message(chat_id=MALLORY, user_id=MALLORY, text="let me in")
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="hello from telegram")
    message_id = update["message"]["message_id"]

    async def answered() -> bool:
        return any(s.visible == "echo: hello from telegram" for s in fake.sent)

    try:
        await async_wait_until(answered, timeout=45, what="the agent's reply on Telegram")
    except AssertionError:
        log = bridge.read_text(errors="replace")  # noqa: ASYNC240 (failure path only)
        raise AssertionError(log[-3000:]) from None
    [reply] = [s for s in fake.sent if s.visible.startswith("echo:")]
    assert reply.chat_id == CHAT and reply.reply_to == message_id

    async def thumbs_up() -> bool:
        return any(
            r["message_id"] == message_id and r["reaction"][0]["emoji"] == "👍"
            for r in fake.reactions
        )

    await async_wait_until(thumbs_up, timeout=10, what="👍 on the original message")
    assert not any("let me in" in s.visible for s in fake.sent)  # never reached the agent
    assert fake.confirmed_offset > stranger["update_id"]
