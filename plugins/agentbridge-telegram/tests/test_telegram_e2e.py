"""The whole bridge with Telegram: ``agentbridge up`` (demo agent in tmux) ↔ the fake Bot API.

Loaded through the real entry point in a real supervisor process: a Telegram message reaches
the agent, the agent's answer comes back as a reply quoting it, receipts show on the message,
and a stranger's message never reaches the agent.
"""

from __future__ import annotations

import asyncio
import itertools
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

from agentbridge_telegram.testing import FakeBotApi, SentMessage

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


async def _launch(
    fake: FakeBotApi, tmp_path: Path, socket: str, crash_at: str | None = None, table: str = ""
) -> tuple[asyncio.subprocess.Process, Path]:
    """``agentbridge up`` with Telegram on the fake Bot API (a real supervisor process);
    ``table``: more lines of ``[channels.telegram]``."""
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir(exist_ok=True)
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\ntmux_socket = "{socket}"\n'
        f'[ledger]\npath = "{state / "ledger.db"}"\n'
        "[console]\nenabled = false\n"
        "[attachments]\nmax_bytes = 4000\n"
        '[agents.demo]\nruntime = "demo"\n'
        f'[channels.telegram]\nbase_url = "{fake.base_url}"\nallowed_users = [{ALICE}]\n{table}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
    env.update(
        HOME=str(home),
        AGENTBRIDGE_CONFIG=str(config),
        AGENTBRIDGE_TELEGRAM_TOKEN=fake.token,
        AGENTBRIDGE_LOAD_PLUGINS="telegram",
    )
    if crash_at is not None:
        env["AGENTBRIDGE_CRASH_AT"] = crash_at
    log_path = tmp_path / "bridge.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentbridge.cli", "up", env=env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    return proc, log_path


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _kill_tmux(socket: str) -> None:
    kill = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "kill-server", stderr=asyncio.subprocess.DEVNULL
    )
    await kill.wait()


@pytest.fixture
async def bridge(fake: FakeBotApi, tmp_path: Path) -> AsyncIterator[Path]:
    socket = f"abtg-{uuid.uuid4().hex[:8]}"
    proc, log_path = await _launch(fake, tmp_path, socket)
    try:
        yield log_path
    finally:
        await _stop(proc)
        await _kill_tmux(socket)


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


async def test_photo_without_caption_and_document_reach_the_agent_as_files(
    fake: FakeBotApi, bridge: Path, tmp_path: Path
) -> None:
    """The agent is told the files' paths (relative to its cwd) and they hold the bytes."""
    photo_bytes, doc_bytes = b"\xff\xd8 a jpeg" * 10, b"col1,col2\n1,2\n"
    small, large = fake.add_file(b"thumb"), fake.add_file(photo_bytes)
    sizes = [
        {"file_id": small, "width": 90, "height": 90, "file_size": 5},
        {"file_id": large, "width": 800, "height": 600, "file_size": len(photo_bytes)},
    ]
    photo = fake.add_message(chat_id=CHAT, user_id=ALICE, extra={"photo": sizes})
    doc = {"file_id": fake.add_file(doc_bytes), "file_name": "../../etc/data.csv"}
    fake.add_message(chat_id=CHAT, user_id=ALICE, caption="see this", extra={"document": doc})
    big = {"file_id": fake.add_file(b"x" * 5000), "file_name": "big.bin", "file_size": 5000}
    fake.add_message(chat_id=CHAT, user_id=ALICE, extra={"document": big})

    def replies() -> list[str]:
        return [s.visible for s in fake.sent if "attached file" in s.visible]

    async def answered() -> bool:
        return len(replies()) >= 2 and any(s.text.startswith("Not delivered") for s in fake.sent)

    try:
        await async_wait_until(answered, timeout=45, what="two replies and a refusal")
    except AssertionError:
        log = bridge.read_text(errors="replace")  # noqa: ASYNC240 (failure path only)
        raise AssertionError(f"{[s.visible for s in fake.sent]}\n{log[-3000:]}") from None
    cwd = tmp_path / "state" / "agents" / "demo" / "workspace"
    photo_reply = next(r for r in replies() if "image/jpeg" in r)
    mid = photo["message"]["message_id"]
    rel = photo_reply.split("attached file: ")[1].split(" ")[0]
    assert rel.startswith(".agentbridge/inbox/") and rel.endswith(f"/photo-{mid}.jpg")
    assert (cwd / rel).read_bytes() == photo_bytes  # the largest size, every byte
    doc_reply = next(r for r in replies() if "see this" in r)
    rel_doc = doc_reply.split("attached file: ")[1].split(" ")[0]
    assert rel_doc.endswith("/data.csv") and ".." not in rel_doc  # no path traversal
    assert (cwd / rel_doc).read_bytes() == doc_bytes
    refusal = next(s.text for s in fake.sent if s.text.startswith("Not delivered"))
    assert "big.bin" in refusal and "limit" in refusal
    assert not any("big.bin" in r for r in replies())  # never reached the agent
    assert (cwd / ".agentbridge" / ".gitignore").read_text() == "*\n"


async def test_kill_after_commit_before_the_files_are_placed_loses_nothing(
    fake: FakeBotApi, tmp_path: Path
) -> None:
    """SIGKILL right after the ledger commit (stage not yet renamed, offset not confirmed):
    after a restart Telegram redelivers, the duplicate's copy is dropped, and the agent still
    gets the first copy's file."""
    socket = f"abtg-{uuid.uuid4().hex[:8]}"
    doc = {"file_id": fake.add_file(b"precious bytes"), "file_name": "keep.txt"}
    fake.add_message(chat_id=CHAT, user_id=ALICE, caption="kept?", extra={"document": doc})
    proc, log_path = await _launch(fake, tmp_path, socket, crash_at="after_ingest")
    try:
        await asyncio.wait_for(proc.wait(), 45)
        assert proc.returncode == -signal.SIGKILL
        inbox = tmp_path / "state" / "agents" / "demo" / "workspace" / ".agentbridge" / "inbox"
        assert [p.name[:6] for p in inbox.iterdir()] == ["stage-"]  # committed, not placed
        await _kill_tmux(socket)
        proc, log_path = await _launch(fake, tmp_path, socket)

        async def answered() -> bool:
            return any("keep.txt" in s.visible for s in fake.sent)

        try:
            await async_wait_until(answered, timeout=45, what="the reply after the restart")
        except AssertionError:
            log = log_path.read_text(errors="replace")
            raise AssertionError(f"{[s.visible for s in fake.sent]}\n{log[-3000:]}") from None
        [reply] = [s.visible for s in fake.sent if "keep.txt" in s.visible]
        rel = reply.split("attached file: ")[1].split(" ")[0]
        cwd = inbox.parent.parent
        assert (cwd / rel).read_bytes() == b"precious bytes"
        assert [p.name for p in inbox.iterdir()] == [rel.split("/")[2]]  # no stray stage
        assert len([s for s in fake.sent if "kept?" in s.visible]) == 1
    finally:
        await _stop(proc)
        await _kill_tmux(socket)


async def test_a_slow_turn_gets_one_status_message_edited_in_place(
    fake: FakeBotApi, tmp_path: Path
) -> None:
    """``progress = true``: a slow, narrated turn posts one status quoting the sender's
    message, edits it at most once per interval with the newest step, and stops before the
    reply (the next turn's status comes after, and the first one is not touched again)."""
    interval = 1.5
    socket = f"abtg-{uuid.uuid4().hex[:8]}"
    table = f"progress = true\nprogress_interval = {interval}\n"
    proc, log_path = await _launch(fake, tmp_path, socket, table=table)
    try:
        asked = fake.add_message(CHAT, ALICE, "#fake:slow=7 #fake:steps=6 narrate")
        asked_id = asked["message"]["message_id"]

        def statuses() -> list[SentMessage]:
            return [s for s in fake.sent if s.visible.startswith("working (")]

        def reply() -> SentMessage | None:
            return next((s for s in fake.sent if s.visible.startswith("echo: #fake:slow=7")), None)

        async def replied() -> bool:
            return reply() is not None

        async def next_status() -> bool:
            return len(statuses()) == 2

        try:
            await async_wait_until(replied, timeout=60, what="the reply")
            fake.add_message(CHAT, ALICE, "#fake:slow=3 #fake:steps=2 next")
            await async_wait_until(next_status, timeout=30, what="the next turn's status")
        except AssertionError:
            log = log_path.read_text(errors="replace")
            raise AssertionError(f"{[s.visible for s in fake.sent]}\n{log[-3000:]}") from None
        first, _ = statuses()
        done = reply()
        assert done is not None and done.reply_to == asked_id  # the reply is the outbox's
        assert first.reply_to == asked_id and first.at < done.at
        assert 2 <= len(first.edits) <= int(7 / interval) + 1, first.edits
        times = [first.at] + [at for at, _ in first.edits]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= interval - 0.2, gaps  # at most one update per interval
        assert times[-1] < done.at  # the turn's end stopped them: none after the reply
        steps = [int(text.split("step ")[1].split("/")[0]) for _, text in first.edits]
        assert steps == sorted(steps) and steps[-1] >= 4, first.edits  # the newest state
        assert first.visible == first.edits[-1][1]  # edited in place: one message, new text
        assert fake.calls.count("editMessageText") >= len(first.edits)
    finally:
        await _stop(proc)
        await _kill_tmux(socket)
