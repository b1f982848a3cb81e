"""The scaffolded plugin: its tree, its entry point, and its own contract tests, run for real."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agentbridge.config import parse_config
from agentbridge.plugin.manager import build_plugin_manager
from agentbridge.plugin.scaffold import scaffold_channel


def run_its_tests(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the generated project's pytest as its author would (minus the pip install)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tree_and_entry_point(tmp_path: Path) -> None:
    root = scaffold_channel("my-chat", tmp_path)
    assert root == tmp_path / "agentbridge-my-chat"
    for relative in (
        "README.md",
        "src/agentbridge_my_chat/__init__.py",
        "src/agentbridge_my_chat/channel.py",
        "src/agentbridge_my_chat/plugin.py",
        "tests/test_contract.py",
    ):
        assert (root / relative).is_file(), relative
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "agentbridge-my-chat"
    assert project["project"]["entry-points"]["agentbridge"] == {
        "my-chat": "agentbridge_my_chat.plugin"
    }


def test_generated_contract_suite_passes(tmp_path: Path) -> None:
    root = scaffold_channel("my-chat", tmp_path)
    result = run_its_tests(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 passed" in result.stdout, result.stdout


def test_contract_suite_catches_a_broken_channel(tmp_path: Path) -> None:
    """Break the two rules that lose or duplicate messages; the suite must say so."""
    root = scaffold_channel("my-chat", tmp_path)
    channel = root / "src/agentbridge_my_chat/channel.py"
    source = channel.read_text()
    broken = (
        source.replace(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nimport contextlib\n",
        )
        .replace(  # ack whatever happens: a failed ingest is swallowed, the update is lost
            "        await self._ctx.ingest(",
            "        with contextlib.suppress(Exception):\n            await self._ctx.ingest(",
        )
        .replace("key=update.id,", "key=None,")  # no idempotency key: redeliveries duplicate
    )
    assert broken.count("contextlib") == 2 and "key=None" in broken
    channel.write_text(broken)
    result = run_its_tests(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED tests/test_contract.py::TestContract::test_ingest_before_ack" in result.stdout
    assert "FAILED tests/test_contract.py::TestContract::test_redelivery_is_idempotent" in (
        result.stdout
    )
    assert "lost" in result.stdout and "redelivery created 2 rows" in result.stdout


def test_contract_suite_catches_a_channel_that_resends_a_lost_answer(tmp_path: Path) -> None:
    """Classify a timeout as transient (the reported Telegram bug): the suite must say so."""
    root = scaffold_channel("my-chat", tmp_path)
    channel = root / "src/agentbridge_my_chat/channel.py"
    source = channel.read_text()
    unknown = "return ErrorClass.UNKNOWN  # the answer was lost: the reply may be in the chat"
    assert unknown in source
    channel.write_text(source.replace(unknown, "return ErrorClass.TRANSIENT"))
    result = run_its_tests(root)
    assert result.returncode == 1, result.stdout + result.stderr
    for test in ("test_ambiguous_errors_are_unknown", "test_unknown_outcome_never_resent"):
        assert f"FAILED tests/test_contract.py::TestContract::{test}" in result.stdout
    assert "the relay would send it again" in result.stdout


def test_generated_plugin_registers_its_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = scaffold_channel("side-chat", tmp_path)
    monkeypatch.syspath_prepend(str(root / "src"))
    plugin = importlib.import_module("agentbridge_side_chat.plugin")
    host = build_plugin_manager(load_entry_points=False, extra=(plugin,))
    assert "side-chat" not in host.channels(parse_config({}))
    channels = host.channels(parse_config({"channels": {"side-chat": {}}}))
    assert channels["side-chat"].limits.max_message_length == 4000


@pytest.mark.parametrize("name", ["", "My", "9lives", "a b", "x" * 41, "http", "local"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="channel name"):
        scaffold_channel(name, tmp_path)


def test_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    scaffold_channel("dup", tmp_path)
    (tmp_path / "agentbridge-dup" / "README.md").write_text("mine")
    with pytest.raises(FileExistsError):
        scaffold_channel("dup", tmp_path)
    assert (tmp_path / "agentbridge-dup" / "README.md").read_text() == "mine"
