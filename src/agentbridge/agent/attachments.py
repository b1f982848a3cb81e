"""Files that come with an inbound message, kept under the agent's cwd for the CLI to read.

Where: ``<cwd>/.agentbridge/inbox/<message id>/<name>`` — next to long-message files
(``inbox.py``: same 0700 dirs, same ``.gitignore`` of ``*``), because the real CLIs read files
inside their working directory without a permission prompt.

Durability (no ledger blobs): the bytes are written and fsynced to a *stage* dir
(``inbox/stage-<token>/``) before the ledger commit, whose ``meta["attachments"]`` names the
token; after the commit the stage is renamed to ``<message id>/``. So the ingress ack comes
only after both the files and the row are durable. A crash before the commit leaves an
unreferenced stage (the platform redelivers: no ack was given; the stage is swept after a
grace period); a crash after it leaves a referenced stage that ``references`` renames when the
message is claimed. A message never points to a file that was not on disk at its ack.

Cleanup: a message's dir stays while it may run again (queued, in flight, quarantined) and
goes ``retention`` seconds after the message ended (completed, failed, interrupted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentbridge.agent import inbox
from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge
from agentbridge.states import TERMINAL

if TYPE_CHECKING:
    from agentbridge.ledger.store import LedgerStore
    from agentbridge.models import Message

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Staged",
    "dir_of",
    "discard_stage",
    "place",
    "references",
    "safe_name",
    "stage",
    "sweep",
    "with_references",
]

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_NAME = 100
#: an unreferenced stage (crash before the ledger commit) is removed after this long; long,
#: because a referenced one waits for its message's claim (which may be hours behind a queue)
STAGE_GRACE = 7 * 86400.0
_STAGE = "stage-"
_UNSAFE = re.compile(r"[^\w.\- ()+,@=]")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Staged:
    """The files written for one ingest, not yet tied to a message id."""

    cwd: Path
    token: str
    files: list[dict[str, Any]]

    @property
    def meta(self) -> dict[str, Any]:
        """What the ledger row keeps (``meta["attachments"]``)."""
        return {"stage": self.token, "files": self.files}


def safe_name(name: str, index: int = 0) -> str:
    """A file name that cannot escape its dir: basename only, no control or odd characters,
    no leading dot, at most ``MAX_NAME`` characters (the suffix kept)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if not unicodedata.category(c).startswith("C"))
    base = _UNSAFE.sub("_", unicodedata.normalize("NFC", base)).strip(" .")
    if not base or base in {".", ".."}:
        base = f"file-{index + 1}"
    if len(base) > MAX_NAME:
        stem, dot, suffix = base.rpartition(".")
        suffix = suffix[:16] if dot and stem else ""
        base = base[: MAX_NAME - len(suffix) - 1].rstrip(" .") + ("." + suffix if suffix else "")
    return base


def _unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate.lower() in seen:
            n += 1
            stem, dot, suffix = name.rpartition(".")
            candidate = f"{stem}-{n}.{suffix}" if dot and stem else f"{name}-{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def _size(item: Attachment) -> int:
    if item.data is not None:
        return len(item.data)
    if item.size is not None:
        return item.size
    if item.path is not None:
        return item.path.stat().st_size
    raise ValueError(f"attachment {item.name!r} has neither data nor path")


def _too_large(name: str, size: int, limit: int) -> AttachmentTooLarge:
    return AttachmentTooLarge(
        f"Not delivered: the file {name!r} is {size / 1e6:.1f} MB; the limit is "
        f"{limit / 1e6:.1f} MB per file."
    )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems (and macOS dirs) refuse: best effort
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(target: Path, item: Attachment, limit: int) -> int:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        if item.data is not None:
            out.write(item.data)
            written = len(item.data)
        else:
            assert item.path is not None
            with item.path.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > limit:  # it grew after its size was checked
                        raise _too_large(item.name, written, limit)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return written


def stage(cwd: Path, items: Sequence[Attachment], max_bytes: int = DEFAULT_MAX_BYTES) -> Staged:
    """Write (and fsync) ``items`` to a fresh stage dir; raise ``AttachmentTooLarge`` (nothing
    left behind) when one is over ``max_bytes``."""
    for item in items:
        size = _size(item)
        if size > max_bytes:
            raise _too_large(item.name, size, max_bytes)
    top = inbox.prepare(cwd)
    token = secrets.token_hex(8)
    where = top / f"{_STAGE}{token}"
    where.mkdir(mode=0o700)
    names = _unique([safe_name(item.name, i) for i, item in enumerate(items)])
    files = []
    try:
        for item, name in zip(items, names, strict=True):
            size = _write(where / name, item, max_bytes)
            files.append({"name": name, "media_type": item.media_type, "size": size})
    except BaseException:
        shutil.rmtree(where, ignore_errors=True)
        raise
    _fsync_dir(where)
    _fsync_dir(top)
    return Staged(cwd, token, files)


def dir_of(cwd: Path, message_id: int) -> Path:
    """``<cwd>/.agentbridge/inbox/<message id>``."""
    return inbox.inbox_dir(cwd) / str(message_id)


def place(cwd: Path, token: str, message_id: int) -> bool:
    """Rename the stage to the message's dir (idempotent); False when neither exists."""
    target = dir_of(cwd, message_id)
    if target.is_dir():
        return True
    try:
        os.rename(inbox.inbox_dir(cwd) / f"{_STAGE}{token}", target)
    except FileNotFoundError:
        return False
    _fsync_dir(target.parent)
    return True


def discard_stage(staged: Staged) -> None:
    """A redelivery: the ledger already has the message (and its own files)."""
    shutil.rmtree(inbox.inbox_dir(staged.cwd) / f"{_STAGE}{staged.token}", ignore_errors=True)


def references(message: Message, cwd: Path) -> str:
    """The lines pasted with the message: each file's path relative to the cwd."""
    info = (message.meta or {}).get("attachments")
    if not isinstance(info, dict) or not info.get("files"):
        return ""
    placed = place(cwd, str(info.get("stage", "")), message.id)
    rel = f"{inbox.RELATIVE_DIR.as_posix()}/{message.id}"
    lines = []
    for f in info["files"]:
        path = f"{rel}/{f['name']}"
        if placed and (cwd / path).is_file():
            lines.append(f"[attached file: {path} ({f['media_type']}, {f['size']} bytes)]")
        else:
            lines.append(f"[attached file {f['name']!r} is missing on disk]")
            log.error("message %s: attachment %s missing under %s", message.id, path, cwd)
    return "\n".join(lines)


def with_references(message: Message, cwd: Path, body: str) -> str:
    """``body`` followed by the attachment lines (only them for a photo without caption)."""
    refs = references(message, cwd)
    if not refs:
        return body
    return f"{body}\n{refs}" if body else refs


async def sweep(
    ledger: LedgerStore, cwd: Path, retention: float, now: float | None = None
) -> list[str]:
    """Remove the dirs of messages that ended over ``retention`` seconds ago, and stages
    older than ``STAGE_GRACE``; return what was removed."""
    from agentbridge.ledger.store import NotFound

    now = time.time() if now is None else now
    gone = []
    with contextlib.suppress(OSError):
        for entry in list(inbox.inbox_dir(cwd).iterdir()):
            if not entry.is_dir():
                continue
            if entry.name.startswith(_STAGE):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime + STAGE_GRACE < now:
                        shutil.rmtree(entry, ignore_errors=True)
                        gone.append(entry.name)
                continue
            if not entry.name.isdigit():
                continue
            try:
                row = await ledger.get(int(entry.name))
            except NotFound:
                continue  # another ledger's (agents may share a cwd)
            except Exception:
                continue  # cannot tell: the next sweep
            if row.state in TERMINAL and row.updated_at + retention < now:
                shutil.rmtree(entry, ignore_errors=True)
                gone.append(entry.name)
    if gone:
        log.info("attachments under %s: removed %s", cwd, gone)
    return gone


DEFAULT_RETENTION = 3600.0


async def sweep_stale(ledger: LedgerStore, cwd: Path) -> None:
    """At session start: long-message leftovers (``inbox.sweep_stale``) and old attachments."""
    await inbox.sweep_stale(ledger, cwd)
    await sweep(ledger, cwd, DEFAULT_RETENTION)


async def after_turn(ledger: LedgerStore, cwd: Path, message: Message) -> None:
    """The turn is over: its long-message file goes now, attachments after the retention."""
    await inbox.discard_after_turn(ledger, cwd, message)
    await sweep(ledger, cwd, DEFAULT_RETENTION)
