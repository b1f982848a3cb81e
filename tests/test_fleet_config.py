"""``[fleet]`` and ``[agents.X] node / relocatable``: validation, defaults, and what ``status``
shows of a fleet with no supervisor answering (read from the ledger)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from agentbridge.cli.status import collect, render
from agentbridge.config import ConfigError, parse_config
from agentbridge.ledger.store import open_ledger
from agentbridge.supervisor.fleet_config import DEFAULT_LEASE, fleet_config


def config(tmp_path: Path, **raw: Any) -> Any:
    return parse_config({"state_dir": str(tmp_path), **raw})


def test_defaults_are_one_sqlite_node_named_after_the_host(tmp_path: Path) -> None:
    cfg = fleet_config(config(tmp_path))
    assert cfg.node == socket.gethostname() and not cfg.shared
    assert cfg.lease_seconds == DEFAULT_LEASE and cfg.heartbeat_seconds == DEFAULT_LEASE / 3
    shared = fleet_config(config(tmp_path, ledger="postgresql://db/x", fleet={"node": "n1"}))
    assert shared.shared and shared.node == "n1" and shared.node_ttl == DEFAULT_LEASE
    assert shared.ledger_timeout == 30.0
    quick = fleet_config(config(tmp_path, ledger="postgresql://db/x", fleet={"ledger_timeout": 2}))
    assert quick.ledger_timeout == 2.0


def test_agents_name_their_node_and_may_be_relocatable(tmp_path: Path) -> None:
    cfg = config(tmp_path, agents={"a": {"node": "n1", "relocatable": True}, "b": {}})
    assert (cfg.agents["a"].node, cfg.agents["a"].relocatable) == ("n1", True)
    assert (cfg.agents["b"].node, cfg.agents["b"].relocatable) == (None, False)
    with pytest.raises(ConfigError, match=r"agents\.a\.relocatable must be a bool"):
        config(tmp_path, agents={"a": {"relocatable": "yes"}})


@pytest.mark.parametrize(
    ("fleet", "error"),
    [
        ({"nodes": "x"}, "unknown key fleet.'nodes'"),
        ({"node": ""}, "fleet.node must be a non-empty string"),
        ({"lease_seconds": 0}, "fleet.lease_seconds must be a number > 0"),
        ({"lease_seconds": 2, "heartbeat_seconds": 2}, "heartbeat_seconds must be shorter"),
        ({"singleton": {"web": "yes"}}, "fleet.singleton must map channel names"),
        ({"ledger_timeout": -1}, "fleet.ledger_timeout must be a number > 0"),
    ],
)
def test_a_bad_fleet_table_is_one_line(tmp_path: Path, fleet: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        fleet_config(config(tmp_path, fleet=fleet))


async def test_status_without_a_supervisor_lists_the_fleet_from_the_ledger(
    tmp_path: Path, postgres_url: str
) -> None:
    cfg = config(tmp_path, ledger=postgres_url, fleet={"node": "n1", "lease_seconds": 5})
    store = await open_ledger(postgres_url)
    try:
        await store.register_node("n1", "i1", "host-1", 101, 5)
        await store.register_node("n2", "i2", "host-2", 102, 5)
        await store.acquire_lease("leader", "n2", 5)
        await store.acquire_lease("agent:demo", "n2", 5)
        await store.leave_node("n1", "i1")
    finally:
        await store.close()
    snapshot = await collect(cfg)
    assert snapshot["supervisor"] is None
    nodes = {n["name"]: n for n in snapshot["nodes"]}
    assert nodes["n1"]["state"] == "stopped" and nodes["n2"]["state"] == "alive"
    assert nodes["n2"]["leader"] and nodes["n2"]["agents"] == ["demo"]
    table = render(snapshot)
    assert "n2 *" in table and "host-2" in table and "stopped" in table
