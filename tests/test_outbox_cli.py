"""A reply in doubt, as its user meets it: ``agentbridge outbox`` and ``status`` say so, and
``outbox sent`` / ``outbox retry`` are the human's two ways out (real CLI, real ledger file)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from agentbridge.ledger.sqlite import Ledger


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTBRIDGE", "XDG_"))}
    env["HOME"] = str(root / "home")
    env["AGENTBRIDGE_CONFIG"] = str(root / "config.toml")
    return subprocess.run(
        [sys.executable, "-m", "agentbridge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def two_replies_in_doubt(path: Path) -> list[int]:
    async with await Ledger.open(path) as ledger:
        ids = []
        for key in ("a", "b"):
            item = await ledger.enqueue_reply("telegram", "42", f"reply {key}", key=key)
            await ledger.reserve_send(item.id)
            await ledger.mark_unknown(item.id, "answer lost", error="TimeoutError: read timed out")
            ids.append(item.id)
        return ids


def test_unknown_replies_are_shown_and_decided_by_a_human(tmp_path: Path) -> None:
    ledger_path = tmp_path / "state" / "ledger.db"
    ledger_path.parent.mkdir()
    (tmp_path / "config.toml").write_text(f'state_dir = "{ledger_path.parent}"\n')
    seen, lost = asyncio.run(two_replies_in_doubt(ledger_path))

    listed = run(tmp_path, "outbox")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("unknown") >= 2 and "TimeoutError" in listed.stdout
    assert "agentbridge outbox retry ID" in listed.stdout  # the way out is on screen
    status = run(tmp_path, "status")
    assert "2 replies may or may not have arrived" in status.stdout, status.stdout

    done = run(tmp_path, "outbox", "sent", str(seen))
    assert done.returncode == 0 and f"reply {seen} is now sent" in done.stdout, done.stderr
    again = run(tmp_path, "outbox", "retry", str(lost))
    assert again.returncode == 0 and f"reply {lost} is now pending" in again.stdout
    rows = {r["id"]: r["state"] for r in json.loads(run(tmp_path, "outbox", "--json").stdout)}
    assert rows == {seen: "sent", lost: "pending"}
    assert "may or may not" not in run(tmp_path, "status").stdout

    refused = run(tmp_path, "outbox", "sent", str(lost))  # only an unknown reply
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
