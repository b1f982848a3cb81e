"""Progress while a turn runs, end to end: a real ``agentbridge up`` with the fake agent
narrating a slow turn (``#fake:steps=N``), the web console's live stream read as the chat page
reads it. Throttled status updates arrive, then the final reply, and no update after it."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentbridge.channels.web import WebChannel
from agentbridge.config import ConfigError, parse_config
from agentbridge.plugin.protocols import EditingChannel
from agentbridge.supervisor.progress import ProgressSettings, progress_settings
from bridge_harness import Bridge, wait_for
from test_mcp_ask import console, post

INTERVAL = 1.5


class Stream(threading.Thread):
    """``GET /api/events`` for one conversation: (monotonic time, event type, data) frames."""

    def __init__(self, where: tuple[str, str], conversation: str) -> None:
        super().__init__(daemon=True)
        url = urlsplit(where[0])
        self.conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
        self.path = f"/api/events?agent=demo&conversation={conversation}"
        self.token = where[1]
        self.frames: list[tuple[float, str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.start()

    def run(self) -> None:
        self.conn.request("GET", self.path, headers={"Authorization": f"Bearer {self.token}"})
        response = self.conn.getresponse()
        self.ready.set()
        kind, data = "", ""
        try:
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and kind:
                    self.frames.append((time.monotonic(), kind, json.loads(data)))
                    kind, data = "", ""
        except (OSError, ValueError):
            return  # closed by the test

    def progress(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, d) for t, k, d in self.frames if k == "receipt" and d.get("progress")]


@pytest.mark.slow
def test_the_console_gets_throttled_progress_then_the_reply(tmp_path: Path) -> None:
    assert isinstance(WebChannel(), EditingChannel)
    extra = {"channels": {"web": {"progress_interval": INTERVAL}}}
    bridge = Bridge(tmp_path, console=True, extra=extra).start()
    try:
        where = console(bridge)
        stream = Stream(where, "alice")
        assert stream.ready.wait(20)
        sent = post(where, "alice", "#fake:slow=7 #fake:steps=6 narrate", "job-1")
        message = int(sent["message"]["id"])
        done = bridge.wait_state(message, "completed", timeout=60)
        assert done.reply == "echo: #fake:slow=7 #fake:steps=6 narrate"

        def replied() -> float | None:
            for at, kind, data in stream.frames:
                view = data.get("message") or {}
                if kind == "ledger" and view.get("id") == message and view.get("reply"):
                    return at
            return None

        reply_at = wait_for(replied, what="the reply on the console's stream")
        # the next turn's first update: a late one of this turn would have come before it
        after = int(
            post(where, "alice", "#fake:slow=3 #fake:steps=2 next", "job-2")["message"]["id"]
        )
        wait_for(
            lambda: any(d["message_id"] == after for _, d in stream.progress()),
            what="progress of the next turn",
        )
        updates = [(t, d) for t, d in stream.progress() if d["message_id"] == message]
        assert 3 <= len(updates) <= int(7 / INTERVAL) + 2, updates
        assert all(d["status"] == "working" for _, d in updates)
        assert all(d["detail"].startswith("working (") for _, d in updates)
        assert "step" in updates[-1][1]["detail"]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(updates)]
        assert min(gaps) >= INTERVAL - 0.2, gaps  # at most one update per interval
        assert updates[-1][0] < reply_at  # the turn's end stopped them: none after the reply
        steps = [int(d["detail"].split("step ")[1].split("/")[0]) for _, d in updates]
        assert steps == sorted(steps) and steps[-1] >= 4  # the newest state, not a backlog
    finally:
        bridge.stop()


@pytest.mark.slow
def test_progress_is_off_where_the_config_says(tmp_path: Path) -> None:
    extra = {"channels": {"web": {"progress": False}}}
    bridge = Bridge(tmp_path, console=True, extra=extra).start()
    try:
        where = console(bridge)
        stream = Stream(where, "alice")
        assert stream.ready.wait(20)
        sent = post(where, "alice", "#fake:slow=3 #fake:steps=3 quiet", "job-1")
        bridge.wait_state(int(sent["message"]["id"]), "completed", timeout=60)
        wait_for(
            lambda: any(k == "ledger" and (d.get("message") or {}).get("reply")
                        for _, k, d in stream.frames),
            what="the reply on the stream",
        )  # fmt: skip
        assert stream.progress() == []
    finally:
        bridge.stop()


def test_progress_keys_are_the_cores_not_the_plugins() -> None:
    def parse(table: dict[str, Any]) -> Any:
        return parse_config({"agents": {"a": {"runtime": "demo"}}, "channels": {"tg": table}})

    config = parse({"token_file": "/t", "progress": True, "progress_interval": 2})
    assert config.channels["tg"] == {"token_file": "/t"}  # the plugin never sees them
    assert progress_settings(config, "tg") == ProgressSettings(enabled=True, interval=2.0)
    assert progress_settings(config, "web") == ProgressSettings(enabled=True, interval=5.0)
    assert progress_settings(config, "other").enabled is False  # off by default elsewhere
    with pytest.raises(ConfigError, match=r"channels\.tg\.progress must be"):
        parse({"progress": "yes"})
    with pytest.raises(ConfigError, match=r"channels\.tg\.progress_interval must be > 0"):
        parse({"progress_interval": 0})


@pytest.mark.slow
def test_a_channel_without_edits_gets_no_progress_and_says_why(tmp_path: Path) -> None:
    extra = {"channels": {"local": {"progress": True, "progress_interval": 1}}}
    bridge = Bridge(tmp_path, extra=extra).start()
    try:
        mid = bridge.send("#fake:slow=3 #fake:steps=3 narrate", "--conversation", "me")
        done = bridge.wait_state(mid, "completed", timeout=60)
        assert done.reply == "echo: #fake:slow=3 #fake:steps=3 narrate"
        assert "channel local: progress is on, but it cannot edit messages" in bridge.log_tail()
        sent = json.loads(bridge.cli("outbox", "--json").stdout)
        assert [i["text"] for i in sent] == [done.reply]  # no status message in its place
    finally:
        bridge.stop()
