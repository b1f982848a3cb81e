"""Files out: what the relay checks and reads before a channel uploads a file.

Two kinds of outbox item go out as a file on a ``FileChannel``: the agent's own (``send_file``,
key ``agent-file:``, shape in ``attachments.py``) and a reply that would need more than
``[outbox] max_parts`` parts (``reply.md``, with a first-line preview as its caption).

The agent's file is read from where it wrote it, and only when its real path (symlinks
resolved) lies under that agent's cwd or ``<state dir>/outfiles``: a row naming any other
path (a forged key, a symlink swapped in after ``send_file`` checked it) is refused, never
uploaded. The last component is opened with ``O_NOFOLLOW`` and must be a regular file, so a
swap between the check and the read fails too. A refusal is permanent, says why in one line
(the row's error) and comes with a short text for the user (``FileRefused.tell_user``).
"""

from __future__ import annotations

import mimetypes
import os
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentbridge.config import Config
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, FileRef, file_ref
from agentbridge.ledger.store import ChannelLedger, NotFound
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import OutFile
from agentbridge.sanitize import sanitize_text

__all__ = [
    "FILE_ROOT",
    "REPLY_FILE",
    "FileRefused",
    "FileRoots",
    "bridge_private",
    "described",
    "name_problem",
    "read_checked",
    "reply_file",
]

FILE_ROOT = "outfiles"  #: the one part of the state dir files may be sent from
REPLY_FILE = "reply.md"
PREVIEW_CHARS = 200
#: ``supervisor/control_mcp.INITIATED_PREFIX`` (that layer is above this one)
_INITIATED = "agent-initiated:"


class FileRefused(Exception):
    """The file can never go out; ``str()`` is the one-line reason the row records."""

    def __init__(self, reason: str, tell_user: str, kind: str) -> None:
        super().__init__(reason)
        self.tell_user = tell_user
        self.kind = kind  #: "gone", "outside", "unreadable" or "too_big"


def human_size(size: int) -> str:
    """``52428800`` → ``50.0 MB`` (the user reads it; the row keeps bytes too)."""
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB" if size >= 1024 else f"{size} bytes"
    return f"{size / (1024 * 1024):.1f} MB"


@dataclass
class FileRoots:
    """Where each agent's files may be read from: its cwd, and the state dir's ``outfiles``."""

    cwds: dict[str, Path]
    state_dir: Path | None = None
    _resolved: dict[str, Path] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> FileRoots:
        """Each agent's cwd as the dispatcher resolves it (without creating anything)."""
        cwds = {
            name: agent.cwd or config.state_dir / "agents" / name / "workspace"
            for name, agent in config.agents.items()
        }
        return cls(cwds, config.state_dir)

    def for_agent(self, agent: str | None) -> list[Path]:
        """The roots for a file of ``agent`` (unknown agent: any agent's cwd)."""
        names = list(self.cwds) if agent is None else [agent] if agent in self.cwds else []
        roots = [self._resolved.setdefault(n, self.cwds[n].resolve()) for n in names]
        if self.state_dir is not None:
            roots.append((self.state_dir / FILE_ROOT).resolve())
        return roots

    async def for_item(self, item: OutboxItem, ledger: ChannelLedger) -> list[Path]:
        """The roots of the agent that sent ``item``: its message's agent, or the agent an
        agent-initiated key names."""
        agent: str | None = None
        if item.message_id is not None:
            try:
                agent = (await ledger.get(item.message_id)).agent
            except NotFound:
                agent = None
        else:
            rest = item.idem_key.removeprefix(FILE_KEY_PREFIX)
            if rest.startswith(_INITIATED):
                agent = rest[len(_INITIATED) :].split(":", 1)[0] or None
        return self.for_agent(agent)


def bridge_private(real: Path, state_dir: Path | None, roots: Sequence[Path]) -> bool:
    """Is ``real`` the bridge's own: under the state dir (console token, ledger, channel
    state) but neither in its ``outfiles`` nor in an agent cwd that itself lies in the state
    dir (the default workspace)? An agent whose cwd holds the state dir (``cwd = "~"``) must
    still never send those files."""
    if state_dir is None:
        return False
    state = state_dir.resolve()
    if not real.is_relative_to(state):
        return False
    allowed = [state / FILE_ROOT, *(r for r in roots if r != state and r.is_relative_to(state))]
    return not any(real.is_relative_to(root) for root in allowed)


def name_problem(name: str) -> str | None:
    """Why a file name may not go out to a user as it is, else None: a control character,
    or an invisible format character (a bidi override makes ``x\u202etxt.exe`` show as
    ``xexe.txt``)."""
    if sanitize_text(name) != unicodedata.normalize("NFC", name):
        return "holds control or invisible format characters (e.g. a bidi override)"
    return None


def read_checked(
    ref: FileRef,
    roots: Sequence[Path],
    limit: int,
    channel: str,
    state_dir: Path | None = None,
) -> OutFile:
    """The file of ``ref``, read whole, if it is under ``roots`` (and not ``bridge_private``
    to ``state_dir``) and at most ``limit`` bytes.

    Blocking (call it in a thread); raises ``FileRefused``.
    """
    name = ref.path.name
    if name_problem(name) is not None:
        raise FileRefused(
            f"file refused: the name of {ref.path!a} {name_problem(name)}",
            "The agent's file was not sent: its name holds invisible or control characters.",
            "outside",
        )
    try:
        real = ref.path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise FileRefused(
            f"file gone: {ref.path} no longer exists (moved or deleted before it was sent)",
            f"The agent sent a file, {name}, but it was gone before it could be sent.",
            "gone",
        ) from None
    if not any(real.is_relative_to(r) for r in roots) or bridge_private(real, state_dir, roots):
        raise FileRefused(
            f"file refused: {ref.path} is {real}, outside the agent's directory",
            f"The agent's file {name} was not sent: it is outside the agent's directory.",
            "outside",
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise FileRefused(
            f"file gone: {ref.path} no longer exists (moved or deleted before it was sent)",
            f"The agent sent a file, {name}, but it was gone before it could be sent.",
            "gone",
        ) from None
    except OSError as exc:
        raise FileRefused(
            f"file refused: {ref.path} cannot be opened ({exc.strerror or exc})",
            f"The agent's file {name} could not be read, so it was not sent.",
            "unreadable",
        ) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(
                f"file refused: {ref.path} is not a regular file",
                f"The agent's file {name} is not a regular file, so it was not sent.",
                "unreadable",
            )
        if info.st_size > limit:
            raise _too_big(ref, info.st_size, limit, channel)
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew while we read it
        raise _too_big(ref, len(data), limit, channel)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return OutFile(name, data, media_type, ref.caption)


def _too_big(ref: FileRef, size: int, limit: int, channel: str) -> FileRefused:
    return FileRefused(
        f"file too big: {ref.path.name} is {size} bytes, over {channel}'s {limit}-byte limit",
        f"The agent sent a file, {ref.path.name} ({human_size(size)}), but it is too big for"
        f" {channel} (limit {human_size(limit)}). It is at {ref.path} on the agent's machine.",
        "too_big",
    )


def reply_file(text: str) -> OutFile:
    """A long reply as ``reply.md``: its first non-empty line is the preview caption."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    preview = first[:PREVIEW_CHARS] + ("…" if len(first) > PREVIEW_CHARS else "")
    note = f"(the whole reply, {len(text)} characters, is in {REPLY_FILE})"
    caption = f"{preview}\n{note}" if preview else note
    return OutFile(REPLY_FILE, text.encode("utf-8", "replace"), "text/markdown", caption)


def described(item: OutboxItem) -> OutFile:
    """The file ``item`` goes out as, without reading the agent's file (``data`` empty): what
    a channel's ``reconcile_file`` matches by, name and caption."""
    ref = file_ref(item)
    if ref is None:
        return reply_file(item.text)
    media_type = mimetypes.guess_type(ref.path.name)[0] or "application/octet-stream"
    return OutFile(ref.path.name, b"", media_type, ref.caption)
