"""Where each chat's (and thread's) catch-up resumes: the newest message the ledger has.

A chat's entry advances only after the message was ingested (or refused, or ignored), so
after a crash, a restart or a reconnect the message list read from the stored time finds
every message the ledger does not have yet; ingest, idempotent on the Lark message id, makes
the few re-read ones no-ops. Lark's list takes whole seconds, so the cursor keeps the ids
seen at its newest millisecond to skip them without asking the ledger.

The file is replaced atomically (temp file, fsync, rename): a crash mid-write leaves the old
cursors, which at worst re-reads a few messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "lark-cursors.json"

#: called with (container id, message id) after that container's cursor was stored
AckListener = Callable[[str, str], None]


@dataclass
class Cursor:
    """One chat (``oc_…``) or thread (``"oc_…:om_root"``) the bot has heard from."""

    last_ms: int
    chat_type: str = "group"
    thread_id: str | None = None
    seen: list[str] = field(default_factory=list)  # message ids at ``last_ms``


class CursorStore:
    """The cursors, kept in ``state_dir``; one writer (the channel's event loop)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self.cursors: dict[str, Cursor] = {}
        self.listeners: list[AckListener] = []
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("lark: %s unreadable (%s); catch-up starts from live", self.path, exc)
            return
        for key, value in (raw.get("containers") or {}).items():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.cursors[str(key)] = Cursor(
                    last_ms=int(value["last_ms"]),
                    chat_type=str(value.get("chat_type") or "group"),
                    thread_id=value.get("thread_id"),
                    seen=[str(s) for s in value.get("seen") or []],
                )

    def get(self, container: str) -> Cursor | None:
        """The stored cursor of ``container``, or None when never heard from."""
        return self.cursors.get(container)

    def threads(self) -> set[str]:
        """The threads (``"chat:root"``) the bot takes part in."""
        return {key for key in self.cursors if ":" in key}

    def seen(self, container: str, created_ms: int, message_id: str) -> bool:
        """Was this message handled already (at or before the cursor)?"""
        cursor = self.cursors.get(container)
        if cursor is None:
            return False
        return created_ms < cursor.last_ms or (
            created_ms == cursor.last_ms and message_id in cursor.seen
        )

    def advance(
        self,
        container: str,
        created_ms: int,
        message_id: str,
        chat_type: str = "group",
        thread_id: str | None = None,
    ) -> None:
        """Move ``container``'s cursor to this message (never back) and store it durably."""
        cursor = self.cursors.get(container)
        changed = True
        if cursor is None:
            self.cursors[container] = Cursor(created_ms, chat_type, thread_id, [message_id])
        elif created_ms > cursor.last_ms:
            cursor.last_ms, cursor.seen = created_ms, [message_id]
            cursor.thread_id = thread_id or cursor.thread_id
        elif created_ms == cursor.last_ms and message_id not in cursor.seen:
            cursor.seen.append(message_id)
        elif thread_id and not cursor.thread_id:
            cursor.thread_id = thread_id
        else:
            changed = False
        if changed:
            self._save()
        for listener in list(self.listeners):
            listener(container, message_id)

    def thread_made(self, container: str, thread_id: str) -> None:
        """The bot's reply made ``container``'s thread: its messages are listed by this id."""
        cursor = self.cursors.get(container)
        if cursor is not None and cursor.thread_id != thread_id:
            cursor.thread_id = thread_id
            self._save()

    def forget(self, container: str) -> None:
        """Stop catching up ``container`` (the bot left it, or it was dissolved)."""
        if self.cursors.pop(container, None) is not None:
            self._save()

    def _save(self) -> None:
        data = {
            "containers": {
                key: {
                    "last_ms": c.last_ms,
                    "chat_type": c.chat_type,
                    "thread_id": c.thread_id,
                    "seen": c.seen[-50:],
                }
                for key, c in self.cursors.items()
            }
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
