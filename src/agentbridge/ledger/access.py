"""Why a ledger file cannot be opened, as one line that names the problem and the fix.

SQLite reports a read-only file as "attempt to write a readonly database" and a read-only
directory (where the ``-wal`` and ``-shm`` files must be created) as "unable to open database
file"; neither says which path to fix. The ledger is only ever opened read-write, so both are
refusals: the file is left exactly as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["access_problem", "open_problem"]


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def access_problem(path: Path) -> str | None:
    """Checked before SQLite touches anything: why the ledger at ``path`` is not writable.

    SQLite opens a write-protected file read-only without a word (even as root, for an
    immutable file or a read-only mount) and fails only at the first write, which would be
    some sender's ingest; this check refuses at open instead, before any ``-wal`` file exists.
    """
    fix = "make it writable or point [ledger] path at a writable place"
    if path.exists() and not _writable(path):
        return f"ledger {path} is read-only ({fix}, e.g. chmod u+w {path})"
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not _writable(existing):
        return (
            f"ledger directory {existing} is read-only; the ledger needs to create files there"
            f" ({fix}, e.g. chmod u+w {existing})"
        )
    for side in ("-wal", "-shm"):
        extra = path.with_name(path.name + side)
        if extra.exists() and not _writable(extra):
            return f"ledger file {extra} is read-only ({fix}, e.g. chmod u+w {extra})"
    return None


def open_problem(path: Path, exc: BaseException) -> str:
    """One line for a failed open of the ledger at ``path``."""
    problem = access_problem(path)
    if problem is not None:
        return problem
    reason = str(exc).strip() or type(exc).__name__
    return f"ledger {path}: cannot open: {reason}"
