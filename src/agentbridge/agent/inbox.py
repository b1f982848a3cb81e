"""Message files under the agent's own cwd, for messages too long to paste whole.

Why under the cwd: the real CLIs read files inside their working directory without asking
(Claude Code's ``Read``, Codex's shell); a file anywhere else makes Claude Code show a
permission prompt nobody answers. The file lives only while its message is in flight: it is
deleted when the turn ends (completed, failed, requeued, quarantined), and leftovers of
messages no longer in flight are swept when a session starts.

Layout: ``<cwd>/.agentbridge/`` (0700, holding a ``.gitignore`` of ``*`` so git never sees
it) → ``inbox/`` (0700) → ``<message id>.md`` (0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentbridge.ledger.store import LedgerStore
    from agentbridge.models import Message

log = logging.getLogger(__name__)

__all__ = [
    "RELATIVE_DIR",
    "discard",
    "discard_after_turn",
    "inbox_dir",
    "pending_ids",
    "pointer",
    "prepare",
    "relative",
    "sweep",
    "sweep_stale",
    "write",
]

IN_FLIGHT = ("claimed", "submitted", "accepted")

#: the inbox, relative to the agent's cwd
RELATIVE_DIR = Path(".agentbridge") / "inbox"


def inbox_dir(cwd: Path) -> Path:
    """``<cwd>/.agentbridge/inbox``."""
    return cwd / RELATIVE_DIR


def relative(message_id: int) -> str:
    """The file's path as the agent is told it: relative to its cwd (no permission prompt)."""
    return f"{RELATIVE_DIR.as_posix()}/{message_id}.md"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # an existing dir too: message text is private


def prepare(cwd: Path) -> Path:
    """Make ``<cwd>/.agentbridge/inbox`` (0700, git-ignored); return it."""
    top = cwd / ".agentbridge"
    cwd.mkdir(parents=True, exist_ok=True)
    _private_dir(top)
    ignore = top / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    _private_dir(top / "inbox")
    return top / "inbox"


def write(cwd: Path, message_id: int, text: str) -> Path:
    """Write the message text (exactly, UTF-8) to its 0600 file; return the absolute path."""
    prepare(cwd)
    path = cwd / relative(message_id)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    os.replace(tmp, path)  # the agent never reads a half-written file
    return path


def pointer(message_id: int, length: int) -> str:
    """What is pasted instead of the text: an instruction the CLI acts on without a prompt."""
    return (
        f"This message is long ({length} characters), so its text is in the file "
        f"{relative(message_id)} (relative to your working directory). Read that whole file "
        "(all of it, in parts if your tool limits how much one read shows): it is the message."
    )


def discard(cwd: Path, message_id: int) -> bool:
    """Delete the message's file; True when there was one."""
    try:
        (cwd / relative(message_id)).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot delete inbox file of message %s: %s", message_id, exc)
        return False
    return True


def pending_ids(cwd: Path) -> list[int]:
    """Message ids that have a file in the inbox (leftovers after a crash, or other agents')."""
    ids = []
    with contextlib.suppress(OSError):
        for entry in inbox_dir(cwd).iterdir():
            if entry.suffix == ".md" and entry.stem.isdigit():
                ids.append(int(entry.stem))
            elif entry.suffix == ".tmp":
                entry.unlink(missing_ok=True)
    return sorted(ids)


def sweep(cwd: Path, keep: Iterable[int]) -> list[int]:
    """Delete every inbox file whose message is not in ``keep``; return the ids deleted."""
    keep = set(keep)
    gone = [mid for mid in pending_ids(cwd) if mid not in keep and discard(cwd, mid)]
    if gone:
        log.info("inbox of %s: removed %d leftover file(s): %s", cwd, len(gone), gone)
    return gone


async def discard_after_turn(ledger: LedgerStore, cwd: Path, message: Message) -> None:
    """The turn is over (completed, failed, interrupted, released, or the session died): the
    file goes, unless another holder already runs a newer lease of the message. A requeued
    message gets its file written again when it is claimed next."""
    try:
        row: Message | None = await ledger.get(message.id)
    except Exception:
        row = None
    if row is not None and str(row.state) in IN_FLIGHT and row.fence != message.fence:
        return
    discard(cwd, message.id)


async def sweep_stale(ledger: LedgerStore, cwd: Path) -> list[int]:
    """Delete the files of messages no longer in flight (a crash left them behind). Messages
    in flight elsewhere keep theirs: agents may share one cwd."""
    from agentbridge.ledger.store import NotFound

    keep = []
    for mid in pending_ids(cwd):
        try:
            row = await ledger.get(mid)
        except NotFound:
            continue  # not a message of this ledger (any more)
        except Exception:
            keep.append(mid)  # cannot tell: leave it for the next sweep
            continue
        if str(row.state) in IN_FLIGHT:
            keep.append(mid)
    return sweep(cwd, keep)
