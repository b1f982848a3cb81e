"""``[[routes]]`` end to end across channels: one real supervisor (real tmux on a private
socket, three fake agents in panes), messages in through the CLI, the HTTP API and the web
console, routed by channel, conversation, sender, ``@name`` mention and the default route.
Each reaches exactly its agent and its reply comes back through its channel; an unroutable one
is refused (CLI exit 1 in one line, HTTP and console 422) and reaches nobody.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge_harness import Bridge, default_agents, wait_for

AGENTS = ("main", "reviewer", "ops")
ROUTES = [
    {"channel": "http", "agent": "ops"},  # by channel
    {"channel": "http", "sender": "ci-bot", "agent": "reviewer"},  # by sender
    {"channel": "web", "conversation": "review-room", "agent": "reviewer"},  # by conversation
    {"channel": "local", "agent": "ops"},  # by channel (first of equals)
    {"channel": "local", "agent": "reviewer"},  # from the CLI: reviewer by @mention only
    {"agent": "main"},  # the default route
]
_URL = re.compile(r"agentbridge: (http|web) at (http://127\.0\.0\.1:\d+)")
_PROMPT = re.compile(r"^\[agentbridge message=(\d+) ")


def call(
    method: str, url: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """One JSON request with a Bearer token; (status, JSON body) also for 4xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def prompts_by_agent(bridge: Bridge) -> dict[str, list[int]]:
    """Message ids each agent's own transcripts recorded as prompts (every session file)."""
    found: dict[str, list[int]] = {name: [] for name in AGENTS}
    for name in AGENTS:
        for path in (bridge.state_dir / "agents" / name).rglob("*.jsonl"):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                content = row.get("message", {}).get("content") if row.get("type") == "user" else ""
                match = _PROMPT.match(content) if isinstance(content, str) else None
                if match:
                    found[name].append(int(match.group(1)))
    return found


@pytest.mark.slow
def test_cli_http_and_console_messages_reach_only_their_routed_agent(tmp_path: Path) -> None:
    http_token = tmp_path / "http.token"
    http_token.write_text("routes-e2e-token-0123456789abcdef\n")
    http_token.chmod(0o600)
    http = {"port": 0, "tokens": [{"token_file": str(http_token), "senders": ["*"]}]}
    bridge = Bridge(
        tmp_path,
        agents={name: default_agents()["demo"] for name in AGENTS},
        extra={"routes": ROUTES, "channels": {"http": http}},
        console=True,
    )
    try:
        bridge.start()
        urls = dict(
            wait_for(
                lambda: (
                    (found := dict(_URL.findall(bridge.log_path.read_text()))).keys()
                    >= {"http", "web"}
                    and found
                ),
                what="the http and console URLs",
            )
        )
        api, console = urls["http"] + "/v1/messages", urls["web"]
        token = http_token.read_text().strip()
        console_token = (bridge.state_dir / "channels/web/console.token").read_text().strip()

        def via_http(text: str, sender: str = "http") -> tuple[int, dict[str, Any]]:
            return call("POST", api, token, {"text": text, "sender": sender})

        def via_console(text: str, conversation: str) -> tuple[int, dict[str, Any]]:
            body = {"text": text, "conversation": conversation, "key": uuid.uuid4().hex}
            return call("POST", console + "/api/send", console_token, body)

        expected: dict[int, tuple[str, str]] = {}  # id → (agent, text the agent gets)
        expected[bridge.send("cli plain")] = ("ops", "cli plain")
        expected[bridge.send("@reviewer: cli mention")] = ("reviewer", "cli mention")
        status, body = via_http("http plain")
        assert status == 202, body
        expected[int(body["id"])] = ("ops", "http plain")
        status, body = via_http("http from ci", sender="ci-bot")
        assert status == 202, body
        expected[int(body["id"])] = ("reviewer", "http from ci")
        status, body = via_console("console review", "review-room")
        assert status == 200, body
        expected[int(body["message"]["id"])] = ("reviewer", "console review")
        status, body = via_console("console default", "web")
        assert status == 200, body
        expected[int(body["message"]["id"])] = ("main", "console default")

        # refused: each names an agent no route of its channel (for this sender) reaches
        refused_cli = bridge.cli("send", "--channel", "web", "@ops refused-cli", check=False)
        assert refused_cli.returncode == 1 and refused_cli.stdout == ""
        (line,) = refused_cli.stderr.strip().splitlines()
        assert "agent 'ops' takes no messages from channel 'web'" in line, line
        status, body = via_http("@reviewer refused-http")
        assert status == 422 and "agent 'reviewer' takes no messages" in body["error"], body
        status, body = via_console("@ops refused-console", "web")
        assert status == 422 and "agent 'ops' takes no messages" in body["error"], body

        for mid, (agent, text) in expected.items():
            msg = bridge.wait_state(mid, "completed", timeout=60)
            assert (msg.agent, msg.text, msg.reply) == (agent, text, f"echo: {text}")
        # the reply comes back through the channel the message came in on
        for mid, (_, text) in expected.items():
            channel = bridge.message(mid).channel
            if channel == "local":
                assert bridge.cli("wait", str(mid)).stdout.strip() == f"echo: {text}"
            elif channel == "http":
                status, body = call("GET", f"{api}/{mid}?wait=30", token)
                assert status == 200 and body["reply"] == f"echo: {text}", body
            else:
                status, body = wait_for(
                    lambda mid=mid: (
                        (got := call("GET", f"{console}/api/messages/{mid}", console_token))[1][
                            "reply"
                        ]
                        and got
                    ),
                    timeout=30,
                    what=f"console reply of {mid}",
                )
                assert body["reply"] == f"echo: {text}", body

        # nothing reached the wrong agent, nothing refused reached any, each prompt once
        prompts = prompts_by_agent(bridge)
        for agent in AGENTS:
            assert sorted(prompts[agent]) == sorted(
                mid for mid, (want, _) in expected.items() if want == agent
            ), (agent, prompts)
            screen = bridge.capture(agent)
            for want, text in expected.values():
                if want != agent:
                    assert text not in screen, (agent, text)
            assert "refused-" not in screen
        assert sorted(m.id for m in bridge.messages()) == sorted(expected)  # none stored
    finally:
        bridge.stop()
