"""The outbox item shape of a file the agent sends (``agentbridge mcp``'s ``send_file``).

The outbox row has no attachment column, so a file travels as an ordinary reply whose
idempotency key starts with ``agent-file:`` and whose first line names the file. A channel that
can upload files checks ``file_ref(item)`` and uploads ``path``; every other channel just sends
the text, which already says where the file is. Only the key marks a file: a reply text that
merely looks like the first line is never taken for one (the agent writes texts, not keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentbridge.models import OutboxItem

FILE_KEY_PREFIX = "agent-file:"
_LINE_START = "File from the agent: "


@dataclass(frozen=True)
class FileRef:
    """A file an outbox item carries: where it is, its size when sent, the caption."""

    path: Path
    size: int
    caption: str


def file_text(path: Path, size: int, caption: str = "") -> str:
    """The item's text: one line with the absolute path and size, then the caption."""
    line = f"{_LINE_START}{path} ({size} bytes)"
    return f"{line}\n{caption}" if caption else line


def file_ref(item: OutboxItem) -> FileRef | None:
    """The file an outbox item carries, or None for a plain reply."""
    if not item.idem_key.startswith(FILE_KEY_PREFIX):
        return None
    first, _, caption = item.text.partition("\n")
    if not first.startswith(_LINE_START) or not first.endswith(" bytes)"):
        return None
    where, _, size = first[len(_LINE_START) : -len(" bytes)")].rpartition(" (")
    if not size.isdigit():
        return None
    return FileRef(Path(where), int(size), caption)
