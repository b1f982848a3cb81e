"""The whole bridge with Slack: ``agentbridge up`` (demo agent in tmux) ↔ the fake Slack.

Loaded through the real entry point in a real supervisor process: a mention reaches the agent
and its answer comes back in the thread with ✅ on the question; a SIGKILLed bridge reads back
what was sent while it was down; a permission request of the agent is answered by a button
click; a slash command is run by the core's command parser and answered in the channel.
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from agentbridge.testing import async_wait_until
from slack_helpers import ALICE, CHAN, DM, MALLORY

from agentbridge_slack.testing import APP_TOKEN, BOT_TOKEN, FakeSlack

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@dataclass
class Up:
    """One bridge directory; ``spawn()`` starts another ``agentbridge up`` on it."""

    log_path: Path
    state: Path
    socket: str
    spawn: Callable[[], Awaitable[None]]
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")  # failure paths only


@pytest.fixture
def table_extra() -> str:
    """More lines of ``[channels.slack]`` (a test parametrizes it)."""
    return ""


@pytest.fixture
async def bridge(fake: FakeSlack, tmp_path: Path, table_extra: str) -> AsyncIterator[Up]:
    home, state = tmp_path / "home", tmp_path / "state"
    home.mkdir()
    socket = f"absl-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\ntmux_socket = "{socket}"\n'
        f'[ledger]\npath = "{state / "ledger.db"}"\n'
        "[console]\nenabled = false\n"
        '[agents.demo]\nruntime = "demo"\n'
        f'[channels.slack]\nbase_url = "{fake.base_url}"\nallowed_users = ["{ALICE}"]\n'
        f"{table_extra}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGENTBRIDGE"))}
    env.update(
        HOME=str(home),
        AGENTBRIDGE_CONFIG=str(config),
        AGENTBRIDGE_SLACK_BOT_TOKEN=BOT_TOKEN,
        AGENTBRIDGE_SLACK_APP_TOKEN=APP_TOKEN,
        AGENTBRIDGE_LOAD_PLUGINS="slack",
    )
    up = Up(tmp_path / "bridge.log", state, socket, spawn=lambda: asyncio.sleep(0))

    async def spawn() -> None:
        connects = fake.connects
        with up.log_path.open("ab") as log:
            up.procs.append(
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

        async def connected() -> bool:
            return fake.connects > connects and fake.connected

        await async_wait_until(connected, timeout=40, what="the bridge's Socket Mode connection")

    up.spawn = spawn
    try:
        await spawn()
        yield up
    finally:
        for proc in up.procs:
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


def texts(fake: FakeSlack) -> list[str]:
    return [p["text"] for p in fake.posted]


async def posted(fake: FakeSlack, text: str, what: str, timeout: float = 45) -> dict:
    async def found() -> dict | None:
        return next((p for p in fake.posted if text in p["text"]), None)

    result: dict = await async_wait_until(found, timeout=timeout, what=what)
    return result


async def test_a_mention_is_answered_in_its_thread(fake: FakeSlack, bridge: Up) -> None:
    try:
        fake.user_message(DM, MALLORY, "let me in")
        top = fake.user_message(CHAN, ALICE, "hello from slack", mention=True)
        answer = await posted(fake, "echo: hello from slack", "the agent's reply on Slack")

        async def ticked() -> bool:
            return ("add", CHAN, top["ts"], "white_check_mark") in fake.reactions

        await async_wait_until(ticked, timeout=15, what="✅ on the question")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bridge.log()[-3000:]}") from None
    assert (answer["channel"], answer["thread_ts"]) == (CHAN, top["ts"])  # in the thread
    assert not any("let me in" in t for t in texts(fake))  # never reached the agent
    assert BOT_TOKEN not in bridge.log() and APP_TOKEN not in bridge.log()
    panes = await asyncio.create_subprocess_exec(
        "tmux", "-L", bridge.socket, "list-panes", "-a", "-F", "#{pane_pid}",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await panes.communicate()
    assert out.split(), "no agent pane"
    for pid in out.split():
        environ = Path(f"/proc/{pid.decode()}/environ")
        if environ.exists():  # noqa: ASYNC240 (Linux; macOS has no /proc)
            raw = environ.read_bytes()  # noqa: ASYNC240
            assert BOT_TOKEN.encode() not in raw and APP_TOKEN.encode() not in raw


async def test_a_sigkilled_bridge_catches_up_what_was_sent_while_down(
    fake: FakeSlack, bridge: Up
) -> None:
    """SIGKILL the supervisor; a DM sent meanwhile (in history only: no socket to push it
    on) is read back by ``conversations.history`` after the restart and answered once."""
    try:
        fake.user_message(DM, ALICE, "before the kill")
        await posted(fake, "echo: before the kill", "reply 1")
        bridge.procs[-1].kill()  # SIGKILL: no shutdown path runs
        await bridge.procs[-1].wait()
        fake.user_message(DM, ALICE, "while it was dead", push=False)
        await bridge.spawn()
        await posted(fake, "echo: while it was dead", "reply 2")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bridge.log()[-3000:]}") from None
    assert texts(fake).count("echo: before the kill") == 1  # not ingested again
    assert texts(fake).count("echo: while it was dead") == 1


async def test_a_button_click_answers_the_agents_permission_request(
    fake: FakeSlack, bridge: Up
) -> None:
    """The real hook program asks the running supervisor; the question shows buttons; Alice
    clicks Allow; the hook prints ``allow`` and the question is edited to say so."""
    try:
        busy = fake.user_message(DM, ALICE, "build it #fake:slow=90")

        async def working() -> bool:
            return ("add", DM, busy["ts"], "eyes") in fake.reactions

        await async_wait_until(working, timeout=45, what="the message in flight")
        hook = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentbridge.agent.permission_hook",
            str(bridge.state / "agents" / "demo"), "demo",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        payload = {"hook_event_name": "PermissionRequest", "tool_name": "Bash",
                   "tool_input": {"command": "make build"}}  # fmt: skip
        answer = asyncio.create_task(hook.communicate(json.dumps(payload).encode()))
        question = await posted(fake, "Permission needed: Bash make build", "the question")
        assert [b["text"]["text"] for b in question["blocks"][1]["elements"]] == [
            "Allow",
            "Deny",
        ]
        fake.click(question, MALLORY, "Allow")  # a stranger's click does nothing
        fake.click(question, ALICE, "Allow")
        out, _ = await asyncio.wait_for(answer, 30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bridge.log()[-3000:]}") from None
    decision = json.loads(out)["hookSpecificOutput"]["decision"]
    assert decision == {"behavior": "allow"}
    note = await posted(fake, "allowed (by UALICE)", "the relay's note", timeout=15)
    assert note["channel"] == DM

    async def edited() -> bool:
        return bool(fake.updates)

    await async_wait_until(edited, timeout=10, what="the question edited")
    [update] = fake.updates
    assert update["ts"] == question["ts"] and "<@UALICE>" in json.dumps(update["blocks"])


async def test_a_slash_command_is_run_by_the_core_and_answered(fake: FakeSlack, bridge: Up) -> None:
    try:
        env = fake.slash(DM, ALICE, "/agentbridge", "agents")
        answer = await posted(fake, "demo", "the /agents answer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bridge.log()[-3000:]}") from None
    assert env.ack_times and answer["channel"] == DM
    assert not any(t.startswith("echo:") for t in texts(fake))  # the agent never saw it


async def test_a_file_without_text_reaches_the_agent(fake: FakeSlack, bridge: Up) -> None:
    """Downloaded with the bot token, stored under the agent's cwd by the core before the
    ack, named in what the agent reads (the demo agent echoes it back)."""
    data = b"col_a,col_b\n1,2\n"
    try:
        shared = fake.add_file("numbers.csv", data, mimetype="text/csv")
        fake.user_message(DM, ALICE, "", files=[shared])
        answer = await posted(fake, "numbers.csv", "the agent's echo naming the file")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bridge.log()[-3000:]}") from None
    assert answer["text"].startswith("echo:") and answer["channel"] == DM
    stored = [p for p in bridge.state.rglob("numbers.csv") if ".agentbridge" in p.parts]
    assert [p.read_bytes() for p in stored] == [data]
    assert fake.downloads == [(shared["id"], f"Bearer {BOT_TOKEN}")]


INTERVAL = 1.5


@pytest.mark.parametrize("table_extra", [f"progress = true\nprogress_interval = {INTERVAL}\n"])
async def test_a_slow_turn_shows_one_status_message_updated_in_place(
    fake: FakeSlack, bridge: Up
) -> None:
    """Progress on: the turn's status is posted once in the DM, then changed with
    ``chat.update`` at most once per interval, saying the newest step; the reply is its own
    message."""
    text = "#fake:slow=6 #fake:steps=5 narrate"
    try:
        fake.user_message(DM, ALICE, text)
        await posted(fake, f"echo: {text}", "the agent's reply on Slack", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{bridge.log()[-3000:]}") from None
    [status] = [p for p in fake.posted if p["text"].startswith("working (")]  # posted once
    edits = [u for u in fake.updates if u["ts"] == status["ts"]]
    assert len(edits) >= 2 and all(u["channel"] == DM for u in edits), fake.updates
    assert all(u["text"].startswith("working (") and "step" in u["text"] for u in edits)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(edits)]
    assert min(gaps) >= INTERVAL - 0.2, gaps  # at most one update per interval
    assert len(fake.posted) == 2  # the status and the reply: no message per update
