"""``[[routes]]``: channel, conversation, sender and @mention routing, the default route, and a
clear refusal of an unroutable message, on the rules (pure) and on a real supervisor with
three fake agents in real tmux panes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbridge.config import Route
from agentbridge.supervisor.routing import Unroutable, route_message
from bridge_harness import Bridge, default_agents
from test_faults import transcript_prompts

AGENTS = {"main": {}, "reviewer": {}, "ops": {}}
ROUTES = [
    Route(channel="telegram", agent="main"),
    Route(channel="telegram", agent="reviewer"),  # reachable from telegram by @mention only
    Route(channel="telegram", conversation="ops-room", agent="ops"),
    Route(channel="http", sender="ci-bot", agent="ops"),
    Route(channel="*", agent="main"),  # the default route
]


def route(channel: str, conversation: str, sender: str, text: str) -> tuple[str, str]:
    decision = route_message(ROUTES, AGENTS, channel, conversation, sender, text)
    return decision.agent, decision.text


def test_most_specific_route_wins_and_the_default_takes_the_rest() -> None:
    assert route("telegram", "c1", "alice", "hi") == ("main", "hi")
    assert route("telegram", "ops-room", "alice", "hi") == ("ops", "hi")  # conversation
    assert route("http", "c", "ci-bot", "build") == ("ops", "build")  # sender
    assert route("http", "c", "alice", "hi") == ("main", "hi")  # default route
    assert route("local", "cli", "me", "hi") == ("main", "hi")


def test_a_mention_picks_a_reachable_agent_and_is_stripped() -> None:
    assert route("telegram", "c1", "alice", "@reviewer: look at #12") == ("reviewer", "look at #12")
    assert route("telegram", "c1", "alice", "@Reviewer look") == ("reviewer", "look")
    assert route("telegram", "c1", "alice", "@nobody hi") == ("main", "@nobody hi")  # plain text
    assert route("telegram", "c1", "alice", "mail me@reviewer x") == ("main", "mail me@reviewer x")
    with pytest.raises(Unroutable, match="agent 'ops' takes no messages from channel 'telegram'"):
        route("telegram", "c1", "alice", "@ops restart it")
    with pytest.raises(Unroutable, match="nothing to send"):
        route("telegram", "c1", "alice", "@reviewer ")


def test_without_a_default_route_an_unmatched_message_is_refused_in_one_line() -> None:
    routes = [Route(channel="telegram", agent="main")]
    with pytest.raises(Unroutable) as info:
        route_message(routes, AGENTS, "http", "c", "bob", "hi")
    assert "\n" not in str(info.value) and "no route for channel 'http'" in str(info.value)


def test_no_routes_means_the_first_agent_and_any_mention() -> None:
    assert route_message((), AGENTS, "local", "c", "u", "hi").agent == "main"
    assert route_message((), AGENTS, "local", "c", "u", "@ops hi").agent == "ops"


@pytest.mark.slow
def test_three_agents_under_one_supervisor_get_what_their_routes_send(tmp_path: Path) -> None:
    agents = {name: default_agents()["demo"] for name in ("main", "reviewer", "ops")}
    routes = [
        {"channel": "local", "conversation": "ops-room", "agent": "ops"},
        {"channel": "local", "sender": "ci-bot", "agent": "reviewer"},
        {"channel": "local", "agent": "main"},
        {"channel": "local", "agent": "reviewer"},
        {"channel": "local", "agent": "ops"},
    ]
    bridge = Bridge(tmp_path, agents=agents, extra={"routes": routes})
    try:
        bridge.start()
        cases = {
            "by channel": ([], "main"),
            "by conversation": (["--conversation", "ops-room"], "ops"),
            "by sender": (["--sender", "ci-bot"], "reviewer"),
            "@ops by mention": ([], "ops"),
        }
        sent = {text: bridge.send(text, *flags) for text, (flags, _) in cases.items()}
        for text, (_, agent) in cases.items():
            msg = bridge.wait_state(sent[text], "completed", timeout=40)
            assert msg.agent == agent, text
            body = text.removeprefix("@ops ")
            assert msg.reply == f"echo: {body}"
            assert transcript_prompts(bridge, msg.id) == [1]
            assert f"message={msg.id} " in "".join(
                p.read_text() for p in (bridge.state_dir / "agents" / agent).rglob("*.jsonl")
            )
        refused = bridge.cli("send", "--channel", "telegram", "lost?", check=False)
        assert refused.returncode == 1
        assert refused.stderr.strip().count("\n") == 0
        assert "no route for channel 'telegram'" in refused.stderr
        assert all(m.channel == "local" for m in bridge.messages())  # nothing stored
    finally:
        bridge.stop()
