"""The chat-command parser's rule, the command lane and the durable ``/use`` choices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentbridge.config import Config, load_config
from agentbridge.supervisor.commands import (
    COMMAND_LANE,
    AgentChoices,
    Command,
    choices_path,
    command_lane,
    parse_command,
    route_choice,
)
from bridge_harness import default_agents, write_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/stop", Command("stop", "stop")),
        ("  /Status \n", Command("status", "Status")),
        ("/STOP", Command("stop", "STOP")),
        ("/retry 12", Command("retry", "retry", "12")),
        ("/retry   #12  ", Command("retry", "retry", "#12")),
        ("/new confirm", Command("new", "new", "confirm")),
        ("/use reviewer", Command("use", "use", "reviewer")),
        ("/stop@my_bot", Command("stop", "stop")),  # Telegram groups append the bot's name
        ("/frobnicate", Command("unknown", "frobnicate")),  # a lone unknown word: help
        ("/usr/bin is broken", None),  # a path: to the agent
        ("/tmp is full", None),  # an unknown word with more text: to the agent
        ("/usr/bin", None),
        ("/stop.", None),
        ("/", None),
        ("/ stop", None),
        ("stop", None),
        ("please /stop", None),
        ("/stop\nand then do the other thing", None),  # several lines: a message
        ("/12", None),
    ],
)
def test_parse_rule(text: str, expected: Command | None) -> None:
    assert parse_command(text) == expected


def test_command_lane_keeps_ordinary_text_on_its_agent() -> None:
    assert command_lane("/tmp is full", "demo") == {"agent": "demo"}
    lane = command_lane("/status", "demo")
    assert lane == {"agent": COMMAND_LANE, "meta": {"command": "status", "for_agent": "demo"}}


def _config(tmp_path: Path, routes: list[dict[str, str]] | None = None) -> Config:
    path = tmp_path / "config.toml"
    agents = {name: default_agents()["demo"] for name in ("main", "reviewer", "ops")}
    tables: dict[str, object] = {"state_dir": str(tmp_path / "state"), "agents": agents}
    if routes is not None:
        tables["routes"] = routes
    write_config(path, tables)
    return load_config(path)


def test_choices_survive_a_reload_and_are_written_atomically(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = choices_path(config)
    choices = AgentChoices.load(path)
    assert not choices and choices.get("tg", "42") is None
    choices.set("tg", "42", "reviewer")
    choices.set("tg", "7", "ops")
    again = AgentChoices.load(path)
    assert again.get("tg", "42") == "reviewer" and again.get("tg", "7") == "ops"
    again.set("tg", "42", None)
    assert AgentChoices.load(path).get("tg", "42") is None
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".agent-choices")] == []
    assert json.loads(path.read_text()) == {json.dumps(["tg", "7"]): "ops"}
    path.write_text("{torn")
    assert not AgentChoices.load(path)  # unreadable: no choices (and a warning), never a crash
    assert os.stat(path.parent).st_mode & 0o077 == 0  # the state dir it made is private


def test_route_choice_applies_a_reachable_choice_and_a_mention_still_wins(tmp_path: Path) -> None:
    routes = [
        {"channel": "tg", "agent": "main"},
        {"channel": "tg", "agent": "reviewer"},  # reachable from tg by mention or /use
        {"channel": "http", "agent": "ops"},
    ]
    config = _config(tmp_path, routes)
    choices = AgentChoices(choices_path(config))
    assert route_choice(config, "tg", "c1", "u", "hi", choices).agent == "main"
    choices.set("tg", "c1", "reviewer")
    decision = route_choice(config, "tg", "c1", "u", "hi", choices)
    assert (decision.agent, decision.text) == ("reviewer", "hi")
    assert route_choice(config, "tg", "c2", "u", "hi", choices).agent == "main"  # per conversation
    mention = route_choice(config, "tg", "c1", "u", "@main do it", choices)
    assert (mention.agent, mention.text) == ("main", "do it")
    choices.set("tg", "c1", "ops")  # not reachable from tg: the routes decide
    assert route_choice(config, "tg", "c1", "u", "hi", choices).agent == "main"
    choices.set("tg", "c1", "reviewer")
    assert route_choice(config, "tg", "c1", "u", "hi").agent == "reviewer"  # read from the file
