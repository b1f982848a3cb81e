"""The whole bridge with Discord: ``agentbridge up`` (demo agent in tmux) ↔ the fake Discord.

Loaded through the real entry point in a real supervisor process: a DM reaches the agent, the
agent's answer comes back as a reply referencing it, the ✅ receipt shows on the message, a
stranger's message never reaches the agent, and the bot token is not in the agent's env.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from agentbridge.testing import async_wait_until
from discord_helpers import ALICE, DM, MALLORY

from agentbridge_discord.testing import FakeDiscord

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
#: log path → (start another supervisor, the processes started so far)
RESTART: dict[str, tuple[Callable[[], Awaitable[None]], list[asyncio.subprocess.Process]]] = {}


@pytest.fixture
def table_extra() -> str:
    """More lines of ``[channels.discord]`` (a test parametrizes it)."""
    return ""


@pytest.fixture
async def bridge(
    fake: FakeDiscord, tmp_path: Path, table_extra: str
) -> AsyncIterator[tuple[Path, str]]:
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir()
    socket = f"abdc-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\ntmux_socket = "{socket}"\n'
        f'[ledger]\npath = "{state / "ledger.db"}"\n'
        "[console]\nenabled = false\n"
        '[agents.demo]\nruntime = "demo"\n'
        f'[channels.discord]\napi_base_url = "{fake.api_base_url}"\n'
        f'gateway_url = "{fake.gateway_url}"\nallowed_users = ["{ALICE}"]\n{table_extra}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
    env.update(
        HOME=str(home),
        AGENTBRIDGE_CONFIG=str(config),
        AGENTBRIDGE_DISCORD_TOKEN=fake.token,
        AGENTBRIDGE_LOAD_PLUGINS="discord",
    )
    log_path = tmp_path / "bridge.log"
    procs: list[asyncio.subprocess.Process] = []

    async def spawn() -> None:
        with log_path.open("ab") as log:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "agentbridge.cli",
                    "up",
                    env=env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )

    await spawn()
    RESTART[str(log_path)] = (spawn, procs)
    try:
        yield log_path, socket
    finally:
        for proc in procs:
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


async def test_round_trip_through_the_real_bridge(
    fake: FakeDiscord, bridge: tuple[Path, str]
) -> None:
    log_path, socket = bridge

    async def connected() -> bool:
        return bool(fake.identify)

    try:
        await async_wait_until(connected, timeout=30, what="the bridge's IDENTIFY")
        await fake.post(DM, MALLORY, "let me in")
        message_id = await fake.post(DM, ALICE, "hello from discord")

        async def answered() -> bool:
            return "echo: hello from discord" in fake.reply_texts()

        await async_wait_until(answered, timeout=45, what="the agent's reply on Discord")
    except AssertionError:
        log = log_path.read_text(errors="replace")
        raise AssertionError(log[-3000:]) from None
    [answer] = [s for s in fake.sent if s.content.startswith("echo:")]
    assert answer.channel_id == DM and answer.reply_to == message_id and answer.nonce

    async def ticked() -> bool:
        return ("PUT", DM, message_id, "✅") in fake.reactions

    await async_wait_until(ticked, timeout=10, what="✅ on the original message")
    assert not any("let me in" in s.content for s in fake.sent)  # never reached the agent
    assert fake.token not in log_path.read_text(errors="replace")
    panes = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, "list-panes", "-a", "-F", "#{pane_pid}",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await panes.communicate()
    for pid in out.split():
        environ = Path(f"/proc/{pid.decode()}/environ")
        if environ.exists():  # noqa: ASYNC240 (Linux; macOS has no /proc)
            assert fake.token.encode() not in environ.read_bytes()  # noqa: ASYNC240


async def test_sigkilled_bridge_catches_up_what_was_sent_while_down(
    fake: FakeDiscord, bridge: tuple[Path, str]
) -> None:
    """SIGKILL the supervisor; a message sent while it is down (in the channel's history
    only, no gateway to dispatch it) is read back after the restart and answered once."""
    log_path, _ = bridge
    spawn, procs = RESTART[str(log_path)]

    async def answered(text: str) -> bool:
        return f"echo: {text}" in fake.reply_texts()

    try:
        await async_wait_until(lambda: connected(fake, 1), timeout=30, what="IDENTIFY")
        await fake.post(DM, ALICE, "before the kill")
        await async_wait_until(lambda: answered("before the kill"), timeout=45, what="reply 1")
        procs[-1].kill()  # SIGKILL: no shutdown path runs
        await procs[-1].wait()
        fake.message(DM, ALICE, "while it was dead")
        await spawn()
        await async_wait_until(lambda: connected(fake, 2), timeout=30, what="IDENTIFY again")
        await async_wait_until(lambda: answered("while it was dead"), timeout=45, what="reply 2")
    except AssertionError:
        log = log_path.read_text(errors="replace")  # failure path only
        raise AssertionError(log[-3000:]) from None
    texts = fake.reply_texts()
    assert texts.count("echo: before the kill") == 1  # the catch-up did not re-ingest it
    assert texts.count("echo: while it was dead") == 1


async def connected(fake: FakeDiscord, sessions: int) -> bool:
    return len(fake.identify) >= sessions


async def test_slash_status_and_a_file_through_the_real_bridge(
    fake: FakeDiscord, bridge: tuple[Path, str], tmp_path: Path
) -> None:
    """``/status`` as a Discord slash command runs the core's command and its answer comes
    back as a channel message; a file sent to the bot lands in the agent's cwd and the agent
    is told where."""
    log_path, _ = bridge

    async def registered() -> bool:
        return bool(fake.commands) and bool(fake.identify)

    try:
        await async_wait_until(registered, timeout=30, what="the slash commands and IDENTIFY")
        iid = await fake.slash(DM, ALICE, "status")

        async def status_answered() -> bool:
            return any(s.content.startswith("agent demo (demo):") for s in fake.sent)

        await async_wait_until(status_answered, timeout=45, what="the /status answer")
        files = [fake.attachment(DM, "notes.txt", b"hello file", content_type="text/plain")]
        await fake.post(DM, ALICE, "read this", attachments=files)

        async def file_answered() -> bool:
            return any("notes.txt" in s.content for s in fake.sent)

        await async_wait_until(file_answered, timeout=45, what="the agent's answer to the file")
    except AssertionError:
        log = log_path.read_text(errors="replace")
        raise AssertionError(log[-3000:]) from None
    [echo] = [c for c in fake.callbacks if c.interaction_id == iid]
    assert echo.type == 4 and echo.data["content"].startswith("`/status`")
    [answer] = [s for s in fake.sent if "notes.txt" in s.content]
    assert answer.content.startswith("echo: read this") and "[attached file: " in answer.content
    [placed] = list((tmp_path / "state").rglob("inbox/*/notes.txt"))
    assert placed.read_bytes() == b"hello file"


async def test_a_permission_button_answers_the_agents_hook(
    fake: FakeDiscord, bridge: tuple[Path, str], tmp_path: Path
) -> None:
    """A message keeps the agent busy; the real PermissionRequest hook program asks the
    bridge; the question reaches Discord with buttons; Alice's click on Allow is the answer
    the hook prints for the CLI, and the question is edited to show it."""
    log_path, _ = bridge
    payload = {"hook_event_name": "PermissionRequest", "tool_name": "Bash",
               "tool_input": {"command": "make test"}}  # fmt: skip
    try:
        await async_wait_until(lambda: connected(fake, 1), timeout=30, what="IDENTIFY")
        mid = await fake.post(DM, ALICE, "build it #fake:slow=30")

        async def busy() -> bool:
            return ("PUT", DM, mid, "👀") in fake.reactions

        await async_wait_until(busy, timeout=45, what="the message in flight (👀)")
        hook = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentbridge.agent.permission_hook",
            str(tmp_path / "state" / "agents" / "demo"), "demo",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        decided = asyncio.ensure_future(hook.communicate(json.dumps(payload).encode()))

        async def asked() -> bool:
            return any(fake.buttons(s.components) for s in fake.sent)

        await async_wait_until(asked, timeout=30, what="the question with buttons")
        [question] = [s for s in fake.sent if fake.buttons(s.components)]
        assert question.content.startswith("Permission needed: Bash make test")
        labels = dict(fake.buttons(question.components))
        await fake.click(DM, ALICE, question.message_id, labels["Allow"])
        out, _ = await asyncio.wait_for(decided, 30)
    except AssertionError:
        log = log_path.read_text(errors="replace")
        raise AssertionError(log[-3000:]) from None
    decision = json.loads(out)["hookSpecificOutput"]["decision"]
    assert decision == {"behavior": "allow"}
    [ack] = fake.callbacks
    assert ack.type == 7 and ack.data["content"].endswith(
        f"→ Allow (clicked by user{ALICE % 10000})"
    )

    async def noted() -> bool:
        return any(s.content.endswith(f"allowed (by {ALICE})") for s in fake.sent)

    await async_wait_until(noted, timeout=30, what="the relay's note")


INTERVAL = 1.5


@pytest.mark.parametrize("table_extra", [f"progress = true\nprogress_interval = {INTERVAL}\n"])
async def test_a_slow_turn_shows_one_status_message_edited_in_place(
    fake: FakeDiscord, bridge: tuple[Path, str]
) -> None:
    """Progress on: the turn's status is posted once, then edited (PATCH) at most once per
    interval, saying the newest step; the reply is its own message."""
    log_path, _ = bridge
    text = "#fake:slow=6 #fake:steps=5 narrate"
    try:
        await async_wait_until(lambda: _true(bool(fake.identify)), timeout=30, what="IDENTIFY")
        await fake.post(DM, ALICE, text)

        async def answered() -> bool:
            return f"echo: {text}" in fake.reply_texts()

        await async_wait_until(answered, timeout=60, what="the agent's reply on Discord")
    except AssertionError:
        raise AssertionError(log_path.read_text(errors="replace")[-3000:]) from None
    [status] = [s for s in fake.sent if s.content.startswith("working (")]  # posted once
    edits = [(at, body) for at, cid, mid, body in fake.edits if mid == status.message_id]
    assert len(edits) >= 2 and all(cid == DM for _, cid, _, _ in fake.edits), fake.edits
    assert all(body.startswith("working (") and "step" in body for _, body in edits)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(edits)]
    assert min(gaps) >= INTERVAL - 0.2, gaps  # at most one update per interval
    assert len(fake.sent) == 2  # the status and the reply: no message per update


async def _true(value: bool) -> bool:
    return value
