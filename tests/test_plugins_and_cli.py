"""The plugin host through real entry points, and the CLI's promises to users."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.channels.local import LocalChannel

class Echo(LocalChannel):
    name = "echo-test"

@hookimpl
def register_channels(register, config):
    register(Echo())
"""
BROKEN = "raise ImportError('this plugin is broken on purpose')\n"
MISSPELT = """
from agentbridge.plugin.hookspecs import hookimpl

@hookimpl
def register_channel(register, config):  # misspelt: the hook is register_channels
    pass
"""


def make_site(root: Path) -> Path:
    """A directory with a fake installed distribution declaring three entry points."""
    site = root / "site"
    dist = site / "fakeplugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[agentbridge]\ngood = good_plugin\nbroken = broken_plugin\nmisspelt = misspelt_plugin\n"
    )
    (site / "good_plugin.py").write_text(GOOD)
    (site / "broken_plugin.py").write_text(BROKEN)
    (site / "misspelt_plugin.py").write_text(MISSPELT)
    return site


def run(
    root: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTBRIDGE", "XDG_"))}
    base["HOME"] = str(root / "home")
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agentbridge.cli", *args],
        env=base,
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


def test_broken_and_misspelt_plugins_are_reported_and_skipped(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    done = run(tmp_path, "plugins", "--json", env={"PYTHONPATH": str(site)})
    reports = {r["name"]: r for r in json.loads(done.stdout)}
    assert done.returncode == 1  # something failed to load: say so
    assert reports["good"]["loaded"] and reports["good"]["hooks"] == ["register_channels"]
    assert not reports["broken"]["loaded"]
    assert "broken on purpose" in reports["broken"]["error"]
    assert not reports["misspelt"]["loaded"]
    assert "register_channel" in reports["misspelt"]["error"]
    # the defaults load through the same path
    assert reports["agentbridge.channels.local"]["loaded"]
    assert reports["agentbridge.runtimes.plugin"]["loaded"]
    table = run(tmp_path, "plugins", env={"PYTHONPATH": str(site)}).stdout
    assert "ERR broken" in table and "ok  good" in table


def test_plugin_allow_list(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    done = run(
        tmp_path,
        "plugins",
        "--json",
        env={"PYTHONPATH": str(site), "AGENTBRIDGE_LOAD_PLUGINS": "good"},
    )
    names = {r["name"] for r in json.loads(done.stdout)}
    assert "good" in names and "broken" not in names and "misspelt" not in names
    assert done.returncode == 0


def test_one_plugin_manager_per_build_and_runtimes_registered() -> None:
    from agentbridge.plugin.manager import build_plugin_manager

    first, second = build_plugin_manager(), build_plugin_manager()
    assert first.pm is not second.pm
    assert set(first.runtimes()) >= {"claude-code", "codex", "demo", "generic"}


def test_init_writes_a_private_commented_config(tmp_path: Path) -> None:
    done = run(tmp_path, "init")
    assert done.returncode == 0
    path = Path(done.stdout.split("wrote ", 1)[1].strip())
    assert path.is_relative_to(tmp_path / "home")  # HOME isolates everything
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "[ledger]" in path.read_text()
    again = run(tmp_path, "init")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert run(tmp_path, "doctor").returncode in (0, 1)  # parses the file it wrote


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[ledger]\nsynchronus = 'full'\n", "ledger.'synchronus'"),
        ("[ledger]\nsynchronous = 'sometimes'\n", "ledger.synchronous"),
        ("[agents.x]\nruntime = 'cluade'\n", "agents.x.runtime"),
        ("[console]\nport = 'eighty'\n", "console.port"),
        ("not toml at all = = =\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    done = run(tmp_path, "--config", str(config), "messages")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert needle in done.stderr


def test_send_messages_show_json_shape(tmp_path: Path) -> None:
    sent = run(
        tmp_path, "send", "--sender", "ana", "--conversation", "c9", "-", input="multi\nline ✓"
    )
    assert sent.returncode == 0
    mid = int(sent.stdout)
    rows = json.loads(run(tmp_path, "messages", "--json").stdout)
    assert [r["id"] for r in rows] == [mid]
    row = rows[0]
    for key in (
        "id",
        "state",
        "channel",
        "conversation",
        "sender",
        "text",
        "attempt",
        "reply",
        "created_at",
        "updated_at",
    ):
        assert key in row
    assert (row["state"], row["sender"], row["conversation"], row["text"]) == (
        "queued",
        "ana",
        "c9",
        "multi\nline ✓",
    )
    shown = json.loads(run(tmp_path, "show", str(mid), "--json").stdout)
    assert shown["events"][0]["to_state"] == "queued"
    assert "history:" in run(tmp_path, "show", str(mid)).stdout
    bad_state = run(tmp_path, "messages", "--state", "nonsense")
    assert bad_state.returncode == 2 and "unknown state" in bad_state.stderr


def test_messages_help_lists_every_state(tmp_path: Path) -> None:
    shown = " ".join(run(tmp_path, "messages", "--help").stdout.split())
    assert "queued, claimed, submitted, accepted, completed, failed, quarantined, interrupted" in (
        shown
    )


def test_status_without_a_supervisor(tmp_path: Path) -> None:
    run(tmp_path, "send", "hello")
    status = json.loads(run(tmp_path, "status", "--json").stdout)
    assert status["supervisor"] is None
    assert status["agents"]["demo"]["queued"] == 1
    assert "not running" in run(tmp_path, "status").stdout


def test_empty_message_is_refused(tmp_path: Path) -> None:
    done = run(tmp_path, "send", "   ")
    assert done.returncode == 1 and "empty" in done.stderr


def test_missing_tmux_is_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("env", "sh"):
        (bin_dir / tool).symlink_to(
            f"/usr/bin/{tool}" if Path(f"/usr/bin/{tool}").exists() else f"/bin/{tool}"
        )
    done = run(tmp_path, "up", "--no-console", env={"PATH": str(bin_dir)})
    assert done.returncode == 1
    assert "tmux not found" in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr


def test_service_units_run_up(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    unit = run(tmp_path, "--config", str(config), "service").stdout
    assert "ExecStart=" in unit and unit.rstrip().endswith("WantedBy=default.target")
    assert f"--config {config}" in unit and " up" in unit
    plist = run(tmp_path, "service", "--launchd").stdout
    assert "<string>up</string>" in plist and "dev.agentbridge" in plist
