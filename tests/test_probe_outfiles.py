"""Probe: the relay-side check of an agent's file (``delivery.outfiles.read_checked``).

A row that names a file the ``send_file`` tool would refuse (a forged key, an older bridge's
row) is refused again when the relay or the console reads it: a secret in the state dir
under an agent cwd that holds it (``cwd = "~"``), or a name with a bidi override.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbridge.delivery.attachments import FileRef
from agentbridge.delivery.outfiles import FILE_ROOT, FileRefused, FileRoots, read_checked


def _ref(path: Path) -> FileRef:
    return FileRef(path=path, size=path.stat().st_size, caption="")


def test_a_state_dir_secret_under_the_agents_cwd_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / FILE_ROOT).mkdir(parents=True)
    token = state / "console.token"
    token.write_text("tok-value-xyz\n")
    roots = FileRoots({"main": tmp_path}, state).for_agent("main")  # cwd holds the state dir
    with pytest.raises(FileRefused) as refused:
        read_checked(_ref(token), roots, 1 << 20, "web", state)
    assert refused.value.kind == "outside" and "tok-value-xyz" not in str(refused.value)
    # what the bridge means to send from there still goes: outfiles, and the agent's own files
    (state / FILE_ROOT / "report.txt").write_text("ok")
    (tmp_path / "notes.txt").write_text("ok")
    for path in (state / FILE_ROOT / "report.txt", tmp_path / "notes.txt"):
        assert read_checked(_ref(path), roots, 1 << 20, "web", state).data == b"ok"


def test_the_default_workspace_inside_the_state_dir_may_send(tmp_path: Path) -> None:
    state = tmp_path / "state"
    workspace = state / "agents" / "main" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "out.txt").write_text("ok")
    (state / "ledger.db").write_text("private")
    roots = FileRoots({"main": workspace}, state).for_agent("main")
    assert read_checked(_ref(workspace / "out.txt"), roots, 100, "web", state).data == b"ok"
    with pytest.raises(FileRefused):
        read_checked(_ref(state / "ledger.db"), [*roots, state], 100, "web", state)


def test_a_bidi_override_in_the_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "invoice\u202efdp.exe"
    path.write_text("MZ")
    with pytest.raises(FileRefused) as refused:
        read_checked(_ref(path), [tmp_path], 100, "telegram", None)
    assert "\u202e" not in str(refused.value) and "\u202e" not in refused.value.tell_user
