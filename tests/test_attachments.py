"""Inbound attachments: names that cannot escape, caps, the crash window, and cleanup.

Real files and a real SQLite ledger; the whole path through a real bridge (Telegram → core →
agent in tmux) is in ``plugins/agentbridge-telegram/tests/test_telegram_e2e.py``.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

import pytest

from agentbridge.agent import attachments
from agentbridge.agent.turn import build_prompt
from agentbridge.ledger.store import open_ledger
from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("..", "file-1"),
        (".bashrc", "bashrc"),
        ("a\x00b\x1b[31mc\u202e.txt", "ab_31mc.txt"),
        ("report final.pdf", "report final.pdf"),
        ("", "file-1"),
    ],
)
def test_safe_name(given: str, want: str) -> None:
    assert attachments.safe_name(given) == want


def test_safe_name_caps_length_and_keeps_the_suffix() -> None:
    name = attachments.safe_name("x" * 500 + ".png")
    assert len(name) <= attachments.MAX_NAME and name.endswith(".png")


def test_oversized_file_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * 2001)
    with pytest.raises(AttachmentTooLarge, match=r"big\.bin"):
        attachments.stage(tmp_path / "cwd", [Attachment("big.bin", path=src)], max_bytes=2000)
    assert not (tmp_path / "cwd" / ".agentbridge" / "inbox").exists() or not list(
        (tmp_path / "cwd" / ".agentbridge" / "inbox").iterdir()
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    cwd = tmp_path / "project"
    cwd.mkdir()
    subprocess.run(["git", "init", "-q", str(cwd)], check=True)
    return cwd


def _ignored(cwd: Path, rel: str) -> bool:
    return subprocess.run(["git", "-C", str(cwd), "check-ignore", "-q", rel]).returncode == 0


async def test_crash_after_commit_before_place_still_gives_the_agent_its_files(
    tmp_path: Path, project: Path
) -> None:
    """The stage is durable before the commit; a kill before ``place`` is healed at claim."""
    cwd = project
    items = [
        Attachment("shot.png", "image/png", data=b"\x89PNG data"),
        Attachment("shot.png", "image/png", data=b"second"),  # same name: both kept
    ]
    staged = attachments.stage(cwd, items)
    ledger = await open_ledger(tmp_path / "ledger.db")
    try:
        result = await ledger.ingest(
            "local", "c", "alice", "", key="k1", agent="demo",
            meta={"attachments": staged.meta},
        )  # fmt: skip
        # (killed here: no place) — the claim builds the prompt, which places the stage
        message = await ledger.claim_next("demo", "t")
        assert message is not None and message.id == result.message.id
        prompt, _ = build_prompt(message, cwd, 100_000)
        base = f".agentbridge/inbox/{message.id}"
        assert f"[attached file: {base}/shot.png (image/png, 9 bytes)]" in prompt
        assert f"[attached file: {base}/shot-2.png (image/png, 6 bytes)]" in prompt
        assert (cwd / base / "shot.png").read_bytes() == b"\x89PNG data"
        assert stat.S_IMODE((cwd / base / "shot-2.png").stat().st_mode) == 0o600
        assert stat.S_IMODE((cwd / base).stat().st_mode) == 0o700
        assert await asyncio.to_thread(_ignored, cwd, base), "git does not ignore the files"
        # a redelivery of the same key drops the copy it staged, the message keeps its own
        again = attachments.stage(cwd, items[:1])
        dup = await ledger.ingest("local", "c", "alice", "", key="k1", agent="demo")
        assert not dup.created
        attachments.discard_stage(again)
        assert sorted(p.name for p in (cwd / ".agentbridge" / "inbox").iterdir()) == [
            str(message.id)
        ]
        # cleanup: kept while it may run again, gone once ended + the retention window
        assert await attachments.sweep(ledger, cwd, retention=60) == []
        done = await ledger.complete(message.id, message.fence, "ok", queue_reply=False)
        assert await attachments.sweep(ledger, cwd, 60, now=done.updated_at + 30) == []
        assert (cwd / base).is_dir()
        gone = await attachments.sweep(ledger, cwd, 60, now=done.updated_at + 61)
        assert gone == [str(message.id)] and not (cwd / base).exists()
    finally:
        await ledger.close()


async def test_missing_file_is_said_not_pointed_to(tmp_path: Path) -> None:
    ledger = await open_ledger(tmp_path / "ledger.db")
    try:
        meta = {"attachments": {"stage": "gone", "files": [{"name": "a.txt", "media_type": "t",
                                                             "size": 1}]}}  # fmt: skip
        await ledger.ingest("local", "c", "alice", "hi", agent="demo", meta=meta)
        message = await ledger.claim_next("demo", "t")
        assert message is not None
        prompt, _ = build_prompt(message, tmp_path, 100_000)
        assert "'a.txt' is missing on disk" in prompt and "attached file:" not in prompt
    finally:
        await ledger.close()


def test_attachments_config() -> None:
    from agentbridge.config import ConfigError, parse_config

    base = {"ledger": {"path": "/tmp/x.db"}}
    assert parse_config(base).attachments.max_bytes == 20 * 1024 * 1024
    assert parse_config({**base, "attachments": {"max_bytes": 10}}).attachments.max_bytes == 10
    with pytest.raises(ConfigError, match="attachments"):
        parse_config({**base, "attachments": {"max_byte": 1}})
    with pytest.raises(ConfigError, match="max_bytes"):
        parse_config({**base, "attachments": {"max_bytes": 0}})
