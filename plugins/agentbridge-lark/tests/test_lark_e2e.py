"""The whole bridge with Lark: ``agentbridge up`` (demo agent in tmux) ↔ the fake Lark.

Loaded through the real entry point in a real supervisor process: a DM reaches the agent, the
agent's answer comes back as a post in the same chat, the DONE reaction shows on the message,
a stranger's message never reaches the agent, the app secret is not in the agent's env nor
the log; a message sent while the bridge was SIGKILLed is caught up after the restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, DM, MALLORY

from agentbridge_lark.testing import APP_ID, APP_SECRET, FakeLark

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Bridge:
    """One config, any number of ``agentbridge up`` processes run one after another."""

    def __init__(self, tmp_path: Path, fake: FakeLark) -> None:
        home, state = tmp_path / "home", tmp_path / "state"
        home.mkdir()
        self.socket = f"ablk-{uuid.uuid4().hex[:8]}"
        config = tmp_path / "config.toml"
        config.write_text(
            f'state_dir = "{state}"\ntmux_socket = "{self.socket}"\n'
            f'[ledger]\npath = "{state / "ledger.db"}"\n'
            "[console]\nenabled = false\n"
            "[attachments]\nmax_bytes = 4000\n"
            '[agents.demo]\nruntime = "demo"\n'
            f'[channels.lark]\napp_id = "{APP_ID}"\ndomain = "{fake.base_url}"\n'
            f'allowed_users = ["{ALICE}"]\n'
        )
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))
        }
        self.env.update(
            HOME=str(home),
            AGENTBRIDGE_CONFIG=str(config),
            AGENTBRIDGE_LARK_APP_SECRET=APP_SECRET,
            AGENTBRIDGE_LOAD_PLUGINS="lark",
        )
        self.log = tmp_path / "bridge.log"
        self.procs: list[asyncio.subprocess.Process] = []

    async def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "agentbridge.cli",
                    "up",
                    env=self.env,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            )

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        kill = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, "kill-server", stderr=asyncio.subprocess.DEVNULL
        )
        await kill.wait()


@pytest.fixture
async def bridge(fake: FakeLark, tmp_path: Path) -> AsyncIterator[Bridge]:
    b = Bridge(tmp_path, fake)
    await b.spawn()
    try:
        yield b
    finally:
        await b.close()


async def waiting(
    what: str, check: Callable[[], Awaitable[bool]], bridge: Bridge, t: float
) -> None:
    try:
        await async_wait_until(check, timeout=t, what=what)
    except AssertionError:
        log = bridge.log.read_text(errors="replace")  # failure path only
        raise AssertionError(f"{what}: {log[-3000:]}") from None


def answered(fake: FakeLark, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return f"echo: {text}" in fake.post_texts()

    return check


async def test_round_trip_through_the_real_bridge(fake: FakeLark, bridge: Bridge) -> None:
    async def connected() -> bool:
        return fake.connects >= 1

    await waiting("the bridge's long connection", connected, bridge, 45)
    await fake.user_message("oc_dm_mallory", MALLORY, "let me in")
    message_id = await fake.user_message(DM, ALICE, "hello from lark")
    await waiting("the agent's reply on Lark", answered(fake, "hello from lark"), bridge, 45)
    [answer] = [p for p in fake.posted if "echo:" in p["content"]]
    assert answer["chat_id"] == DM and answer["msg_type"] == "post" and answer["uuid"]

    async def done() -> bool:
        return ("add", message_id, "DONE") in fake.reactions

    await waiting("DONE on the original message", done, bridge, 15)
    assert not any("let me in" in text for text in fake.post_texts())  # never reached the agent
    assert APP_SECRET not in bridge.log.read_text(errors="replace")
    panes = await asyncio.create_subprocess_exec(
        "tmux",
        "-L",
        bridge.socket,
        "list-panes",
        "-a",
        "-F",
        "#{pane_pid}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await panes.communicate()
    for pid in out.split():
        environ = Path(f"/proc/{pid.decode()}/environ")
        if environ.exists():  # noqa: ASYNC240 (Linux; macOS has no /proc)
            assert APP_SECRET.encode() not in environ.read_bytes()  # noqa: ASYNC240


async def test_sigkilled_bridge_catches_up_what_was_sent_while_down(
    fake: FakeLark, bridge: Bridge
) -> None:
    """SIGKILL the supervisor; a message sent while it is down (in the chat's message list
    only: no connection to push it on) is read back after the restart and answered once."""

    async def connected(n: int) -> bool:
        return fake.connects >= n

    await waiting("connect", lambda: connected(1), bridge, 45)
    await fake.user_message(DM, ALICE, "before the kill")
    await waiting("reply 1", answered(fake, "before the kill"), bridge, 45)
    bridge.procs[-1].kill()  # SIGKILL: no shutdown path runs
    await bridge.procs[-1].wait()
    await fake.user_message(DM, ALICE, "while it was dead", live=False)
    await bridge.spawn()
    await waiting("connect again", lambda: connected(2), bridge, 45)
    await waiting("reply 2", answered(fake, "while it was dead"), bridge, 45)
    texts = fake.post_texts()
    assert texts.count("echo: before the kill") == 1  # the catch-up did not re-ingest it
    assert texts.count("echo: while it was dead") == 1


async def test_a_picture_reaches_the_agent_as_a_file_and_a_big_one_is_refused(
    fake: FakeLark, bridge: Bridge, tmp_path: Path
) -> None:
    """A picture without text lands under the agent's ``.agentbridge/inbox/`` with every
    byte and the agent is told its path; a file over ``[attachments] max_bytes`` never
    reaches the agent and the sender is told why."""
    await waiting("connect", lambda: _connected(fake), bridge, 45)
    png = b"\x89PNG\r\n\x1a\n" + b"p" * 500
    key = fake.add_resource(png, "image")
    pic = await fake.user_message(DM, ALICE, "", msg_type="image", content={"image_key": key})
    big = {"file_key": fake.add_resource(b"x" * 5000), "file_name": "big.bin"}
    await fake.user_message(DM, ALICE, "", msg_type="file", content=big)

    async def answered() -> bool:
        texts = fake.post_texts()
        return any("attached file" in t for t in texts) and any("big.bin" in t for t in texts)

    await waiting("the picture's reply and the refusal", answered, bridge, 45)
    reply = next(t for t in fake.post_texts() if "attached file" in t)
    rel = reply.split("attached file: ")[1].split(" ")[0]
    assert rel.startswith(".agentbridge/inbox/") and rel.endswith(f"/image-{pic}.png")
    cwd = tmp_path / "state" / "agents" / "demo" / "workspace"
    assert (cwd / rel).read_bytes() == png
    refusal = next(t for t in fake.post_texts() if "big.bin" in t)
    assert refusal.startswith("Not delivered") and "limit" in refusal
    assert not any("big.bin" in t for t in fake.post_texts() if "attached file" in t)


async def _connected(fake: FakeLark) -> bool:
    return fake.connects >= 1
