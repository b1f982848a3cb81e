"""A bad channel config or a broken channel plugin at ``agentbridge up``, and ``doctor`` on a
missing agent ``cwd``: real ``agentbridge`` subprocesses, real config files, real ledgers.

A ``ConfigError`` from a channel (built-in, or a plugin's ``register_channels`` or ``start``)
stops ``up`` with that one line and the ledger untouched; any other exception in a plugin's
``register_channels`` is that plugin's bug: its channels are skipped, the others run
(docs/plugins.md, "How plugins are loaded").
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbridge.config import ConfigError, parse_config
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.manager import DuplicateChannel, build_plugin_manager
from bridge_harness import Bridge
from test_bad_input import digest, ledger_messages, one_line, run, seeded, socket_name, write_config
from test_plugins_and_cli import GOOD

NO_CONSOLE = "[console]\nenabled = false\n"
EXPLODING = """
from agentbridge.plugin.hookspecs import hookimpl

@hookimpl
def register_channels(register, config):
    raise RuntimeError("exploding factory on purpose")
"""


@pytest.fixture(autouse=True)
def _no_tmux_left(tmp_path: Path) -> Iterator[None]:
    """A refusal that failed would have started our tmux server: never leave it behind."""
    yield
    subprocess.run(["tmux", "-L", socket_name(tmp_path), "kill-server"], capture_output=True)


def _telegram() -> str:
    pytest.importorskip("agentbridge_telegram")
    return "[channels.telegram]\n"


CASES = {
    # refused when the channels are built (register_channels), before the ledger is opened
    "telegram wrong type": (
        lambda: _telegram() + 'allowed_users = "bob"\n' + NO_CONSOLE,
        "channels.telegram.allowed_users has the wrong type",
    ),
    "schedule missing key": (
        lambda: '[schedules.standup]\ntext = "hi"\n' + NO_CONSOLE,
        "schedules.standup: set exactly one of cron or every",
    ),
    # refused when the channel starts (its token is read there), before any agent runs
    "telegram missing token": (
        lambda: _telegram() + "allowed_users = [1]\n" + NO_CONSOLE,
        "channels.telegram needs a bot token",
    ),
    # refused by the preflight: port 0 still checks the host
    "console unbindable host": (
        lambda: '[console]\nhost = "192.0.2.1"\nport = 0\n',
        "console.host '192.0.2.1'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_channel_config_stops_up_in_one_line_with_the_ledger_untouched(
    tmp_path: Path, case: str
) -> None:
    extra, needle = CASES[case]
    config = write_config(tmp_path, extra())
    ledger = seeded(tmp_path, config)
    before = digest(ledger)
    done = run(tmp_path, "up", "--config", str(config))
    assert done.returncode == 1, done.stderr
    assert needle in one_line(done)  # one line, no traceback
    assert digest(ledger) == before
    assert [m[0] for m in ledger_messages(tmp_path)] == ["seed"]
    listed = run(tmp_path, "messages", "--json", "--config", str(config))
    assert b'"state": "queued"' in listed.stdout  # no agent ever claimed the seed


def make_site(root: Path) -> Path:
    """A fake installed distribution with a good channel plugin and one whose factory raises."""
    site = root / "site"
    dist = site / "fakechannels-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakechannels\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[agentbridge]\ngood = good_channel\nexploding = exploding_channel\n"
    )
    (site / "good_channel.py").write_text(GOOD)
    (site / "exploding_channel.py").write_text(EXPLODING)
    return site


def test_a_plugin_whose_factory_raises_is_skipped_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(make_site(tmp_path)))
    bridge = Bridge(tmp_path)
    try:
        bridge.start()
        assert bridge.status()["supervisor"]["channels"] == ["echo-test", "local"]
        mid = bridge.send("still here")
        assert bridge.wait_state(mid, "completed", timeout=40).reply == "echo: still here"
    finally:
        bridge.stop()
    terminal = bridge.log_path.read_text()
    assert "Traceback" not in terminal
    (line,) = [x for x in terminal.splitlines() if "exploding" in x]
    assert "plugin exploding: register_channels failed, its channels are skipped" in line
    assert "RuntimeError: exploding factory on purpose" in line
    logfile = (bridge.home / ".local/state/agentbridge/log/agentbridge.log").read_text()
    assert "Traceback" in logfile and 'raise RuntimeError("exploding factory' in logfile


class _Twice:
    @hookimpl
    def register_channels(self, register: object, config: object) -> None:
        from agentbridge.channels.local import LocalChannel

        register(LocalChannel())  # type: ignore[operator]


class _Refusing:
    @hookimpl
    def register_channels(self) -> None:
        raise ConfigError("config: channels.x.key must be a string")


def test_a_duplicate_name_or_a_config_error_from_a_factory_is_not_swallowed() -> None:
    with pytest.raises(DuplicateChannel, match="channel 'local' registered twice"):
        build_plugin_manager(load_entry_points=False, extra=(_Twice(),)).channels(parse_config({}))
    with pytest.raises(ConfigError, match=r"channels\.x\.key"):
        build_plugin_manager(load_entry_points=False, extra=(_Refusing(),)).channels(
            parse_config({})
        )


def test_doctor_reports_a_missing_agent_cwd_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "project"
    config = write_config(tmp_path, NO_CONSOLE, cwd=tmp_path / "work")
    config.write_text(config.read_text().replace(str(tmp_path / "work"), str(missing)))
    done = run(tmp_path, "doctor", "--config", str(config))
    assert done.returncode == 1, done.stdout
    (line,) = [x for x in done.stdout.decode().splitlines() if "cwd" in x]
    assert line.startswith("ERR agent main")
    assert f"agents.main.cwd '{missing}' does not exist" in line and f"mkdir -p {missing}" in line
    assert not missing.exists()
