"""Probe: ``send_file`` through ``agentbridge mcp`` with hostile paths, on a real bridge.

Each bad path gets one clear refusal for the agent (never a crash of the tool or the
control socket) and nothing in the outbox; a secret under the state dir never goes out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge_harness import running_bridge
from test_mcp_tools import bridge_kwargs, call_tools, registered_command, replies

pytestmark = pytest.mark.slow


def test_hostile_send_file_paths_are_refused_in_one_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    os.mkfifo(project / "pipe")
    (project / "adir").mkdir()
    (project / ("report\u202etxt.exe")).write_text("x")
    with running_bridge(tmp_path, **bridge_kwargs(project)) as b:
        command, args = registered_command(b)
        cases = {
            "nul": "a\x00b.txt",
            "long": "x" * 300 + ".txt",
            "fifo": "pipe",
            "dir": "adir",
            "device": "/dev/null",
            "dotdot": "../state/console.token",
            "bidi": "report\u202etxt.exe",
        }
        results = call_tools(
            command, args, [("send_file", {"path": p}) for p in cases.values()], project
        )
        got = dict(zip(cases, results, strict=True))
        for name, (failed, text) in got.items():
            print(name, failed, repr(text))
        for name, (failed, text) in got.items():
            assert failed, f"{name}: {text}"
            assert "\n" not in text.strip() and "Traceback" not in text, f"{name}: {text!r}"
        assert not [r for r in replies(b) if r.idem_key.startswith("agent-file:")]


def test_a_cwd_holding_the_state_dir_cannot_send_its_tokens(tmp_path: Path) -> None:
    """``cwd = "~"`` is common, and the state dir (console token, channel state) is below it."""
    with running_bridge(tmp_path, **bridge_kwargs(tmp_path)) as b:
        token = b.state_dir / "console.token"
        token.write_text("secret-token-value\n")
        token.chmod(0o600)
        command, args = registered_command(b)
        [(failed, text)] = call_tools(
            command, args, [("send_file", {"path": str(token)})], tmp_path
        )
        assert failed, text
        assert "state" in text and "secret-token-value" not in text
        assert not [r for r in replies(b) if r.idem_key.startswith("agent-file:")]
