"""The ``doctor_checks`` hook: sync and async plugins, one that raises, one that hangs — each
becomes lines of ``agentbridge doctor``, in plugin order, and no plugin stops the others."""

from __future__ import annotations

import asyncio
import types

from agentbridge.config import Config, parse_config
from agentbridge.plugin.doctor import DoctorCheck, run_checks
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.manager import build_plugin_manager


def plugin(name: str, impl: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.doctor_checks = impl  # type: ignore[attr-defined]
    return module


@hookimpl
def sync_checks(config: Config) -> list[DoctorCheck]:
    table = config.channels.get("sync")
    if table is None:
        return []
    return [DoctorCheck("sync token", "token_file" in table, "channels.sync.token_file missing")]


@hookimpl
async def async_checks(config: Config) -> list[DoctorCheck]:
    await asyncio.sleep(0)  # really awaited, in a loop the CLI made
    return [DoctorCheck("async api", True, f"reached ({asyncio.get_running_loop() is not None})")]


@hookimpl
def broken_checks(config: Config) -> list[DoctorCheck]:
    raise KeyError("nope")


@hookimpl
async def hanging_checks(config: Config) -> list[DoctorCheck]:
    await asyncio.Event().wait()
    return []


def test_every_plugin_is_asked_and_isolated() -> None:
    host = build_plugin_manager(
        load_entry_points=False,
        extra=(
            plugin("p_sync", sync_checks),
            plugin("p_async", async_checks),
            plugin("p_broken", broken_checks),
            plugin("p_hang", hanging_checks),
        ),
    )
    config = parse_config({"channels": {"sync": {}}})
    checks = run_checks(host.pm, config, timeout=0.5)
    assert checks == [
        DoctorCheck("sync token", False, "channels.sync.token_file missing"),
        DoctorCheck("async api", True, "reached (True)"),
        DoctorCheck("plugin p_broken", False, "doctor check failed: 'nope'"),
        DoctorCheck("plugin p_hang", False, "doctor checks took over 0.5 s"),
    ]
    assert run_checks(host.pm, parse_config({}), timeout=0.5)[0].what == "async api"  # sync: []


def test_no_plugin_checks_means_no_lines() -> None:
    host = build_plugin_manager(load_entry_points=False)
    assert run_checks(host.pm, parse_config({})) == []
