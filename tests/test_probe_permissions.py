"""Probe: answers to a permission request from the wrong place, and hostile console bodies.

A real ``agentbridge up`` (fake agent in real tmux, the real hook) asks in ``local:alice``.
``agentbridge send "yes ID"`` from another conversation is refused with the line that says
where to answer, and nothing is stored (stored, it would reach the agent as a prompt and
answer nothing) — with the supervisor running and without. The console's answer endpoint
gives one 4xx line for any body shape, never a 500.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge_harness import running_bridge, wait_for
from test_permission_e2e import question, replies

pytestmark = pytest.mark.slow


def _post(url: str, token: str, body: bytes, kind: str = "application/json") -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": kind},
    )
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_an_answer_from_another_conversation_is_refused_not_stored(tmp_path: Path) -> None:
    with running_bridge(tmp_path, console=True) as bridge:
        console = wait_for(
            lambda: re.findall(
                r"agentbridge: web at (http://127\.0\.0\.1:\d+)", bridge.log_path.read_text()
            ),
            what="the console url",
        )[-1]
        token = (bridge.state_dir / "channels/web/console.token").read_text().strip()
        mid = bridge.send("make the file #fake:tool", "--conversation", "alice")
        _, short_id = question(bridge, mid)
        count = len(bridge.messages())
        done = bridge.cli("send", f"yes {short_id}", check=False)  # the default conversation
        assert done.returncode != 0 and done.stdout == "", done.stdout
        assert "was asked in local:alice" in done.stderr, done.stderr
        assert "--conversation alice" in done.stderr and "Traceback" not in done.stderr
        assert len(bridge.messages()) == count
        # hostile bodies for the console's answer: a clear 4xx each, the request untouched
        url = f"{console}/api/permissions/{short_id}"
        bodies = [b'{"answer": ["yes"]}', b'{"answer": {"a": 1}}', b"[1]", b"\xff\xfe", b"{"]
        assert [_post(url, token, body) for body in bodies] == [400] * len(bodies)
        assert _post(url, token, b'{"answer": "yes"}', "text/plain") == 415
        assert _post(f"{console}/api/permissions/zzzzz", token, b'{"answer": "yes"}') == 404
        assert _post(f"{console}/api/permissions/{'a' * 5000}", token, b'{"answer": "no"}') == 400
        assert bridge.message(mid).state in ("submitted", "accepted")
        texts = [r.text for r in replies(bridge, mid)]
        assert not [t for t in texts if "answered" in t or ": allowed" in t], texts
        # the right conversation still answers
        done = bridge.cli("send", "--conversation", "alice", f"yes {short_id}", check=False)
        assert done.returncode == 0, done.stderr
        bridge.wait_state(mid, "completed", timeout=30)
    # with no supervisor: the same refusal, from the CLI's own ledger
    done = bridge.cli("send", f"no {short_id}", check=False)
    assert done.returncode != 0 and "was asked in local:alice" in done.stderr, done.stderr
    assert len(bridge.messages()) == count
