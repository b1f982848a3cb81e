"""Files back from the agent, end to end: ``agentbridge up``, the fake agent, the console.

A console message is in flight (the fake agent works slowly); the agent's registered MCP
server (spawned by the ``mcp`` SDK's stdio client, as a CLI would) calls ``send_file``; the
bridge's own relay and console then offer the file for download, read from the agent's cwd.
A file over ``[console] max_file_bytes`` fails its row for good, and the user is told.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bridge_harness import Bridge, default_agents, running_bridge, wait_for
from test_mcp_tools import call_tools, registered_command
from test_routes_channels import call

pytestmark = pytest.mark.slow


def console_of(bridge: Bridge) -> tuple[str, str]:
    """(base URL, token) of the bridge's console."""
    url = wait_for(
        lambda: re.findall(
            r"agentbridge: web at (http://127\.0\.0\.1:\d+)", bridge.log_path.read_text()
        ),
        what="the console url",
    )[-1]
    return url, (bridge.state_dir / "channels/web/console.token").read_text().strip()


def download(url: str, token: str) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_send_file_reaches_the_console_as_a_download(tmp_path: Path) -> None:
    project = tmp_path / "project"
    kwargs: dict[str, Any] = {
        "agents": default_agents(cwd=str(project)),
        "console": True,
        "extra": {"console": {"enabled": True, "port": 0, "max_file_bytes": 1000}},
    }
    with running_bridge(tmp_path, **kwargs) as b:
        base, token = console_of(b)
        body = {"text": "#fake:slow=20 build it", "agent": "demo", "conversation": "c", "key": "k1"}
        code, sent = call("POST", base + "/api/send", token, body)
        assert code == 200, sent
        message = int(sent["message"]["id"])
        b.wait_state(message, "accepted")
        (project / "build.log").write_bytes(b"ok\n" * 100)
        (project / "core.dump").write_bytes(b"\0" * 1001)
        command, args = registered_command(b)
        results = call_tools(
            command,
            args,
            [
                ("send_file", {"path": "build.log", "caption": "the log"}),
                ("send_file", {"path": "core.dump"}),
            ],
            project,
        )
        assert [failed for failed, _ in results] == [False, False], results

        def files() -> list[dict[str, Any]] | None:
            found = call("GET", f"{base}/api/messages/{message}", token)[1]["files"]
            done = len(found) == 2 and all(f["state"] in ("sent", "failed") for f in found)
            return found if done else None

        log, dump = wait_for(files, timeout=30, what="both file rows settled")
        assert (log["name"], log["state"], log["caption"]) == ("build.log", "sent", "the log")
        status, data, headers = download(base + log["url"], token)
        assert status == 200 and data == b"ok\n" * 100
        assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''build.log"
        assert (dump["state"], dump["url"]) == ("failed", None)
        assert dump["error"] == (
            "permanent: file too big: core.dump is 1001 bytes, over web's 1000-byte limit"
        )
        status, _, _ = download(f"{base}/api/files/{dump['outbox_id']}", token)
        assert status == 404
        trail = [e["detail"] for e in b.events(message)]
        assert any("core.dump" in detail and "too big" in detail for detail in trail), trail
