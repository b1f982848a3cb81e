"""A signed HTTP request captured and replayed after ``agentbridge up`` restarts is refused.

Real supervisor subprocesses (tests/bridge_harness.py), a real HTTP client, the real ledger
file: the only memory shared by the two runs is what the ledger persisted.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from agentbridge.channels.http_auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from bridge_harness import Bridge, wait_for

SECRET = b"replay-test-secret-0123456789"
_URL = re.compile(r"agentbridge: http at (http://\S+/v1/messages)")


def start_and_find_url(bridge: Bridge) -> str:
    """Start the bridge and read the API's URL from what ``up`` prints (port 0: a new one)."""
    offset = bridge.log_path.stat().st_size if bridge.log_path.exists() else 0
    bridge.start()

    def url() -> str | None:
        found = _URL.findall(bridge.log_path.read_bytes()[offset:].decode(errors="replace"))
        return found[-1] if found else None

    return str(wait_for(url, what="the http channel's URL"))


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_signed_request_replayed_after_restart_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "hmac.key"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    bridge = Bridge(
        tmp_path, extra={"channels": {"http": {"port": 0, "hmac_secret_file": str(secret)}}}
    )
    marker = f"signed-once-{time.time_ns()}"
    data = json.dumps({"text": marker}).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(SECRET, stamp, "POST", "/v1/messages", data),
    }
    try:
        first_url = start_and_find_url(bridge)
        status, body = post(first_url, data, headers)
        assert status == 202, body
        bridge.stop()

        second_url = start_and_find_url(bridge)  # a new process: nothing in memory survives
        status, body = post(second_url, data, headers)  # the same bytes, inside the window
        assert status == 401, body
        assert str(body["error"]).startswith("replayed signature"), body
    finally:
        bridge.stop()
    assert [m.text for m in bridge.messages()].count(marker) == 1
