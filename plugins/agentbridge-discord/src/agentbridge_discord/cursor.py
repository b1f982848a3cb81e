"""Where each Discord channel's catch-up resumes: the last message id the ledger has.

Discord's gateway has no per-event ack; the "ack" of this channel is this file. A message id
is written here only after ``ctx.ingest`` returned (or the message was refused or ignored), so
after a crash, a restart or a reconnect the history read from the stored id finds every
message the ledger does not have yet. The file is replaced atomically (temp file, fsync,
rename): a crash mid-write leaves the old cursors, which at worst re-reads a few messages
that ingest then recognises by their Discord id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "discord-cursors.json"

#: called with (channel id, message id) after the cursor for that channel was stored
AckListener = Callable[[int, int], None]


@dataclass
class Cursor:
    """One channel (or thread, or DM) the bot has heard from."""

    last: int
    guild: int | None = None
    parent: int | None = None  # the thread's parent channel, when the channel is a thread


class CursorStore:
    """The per-channel cursors, kept in ``state_dir``; one writer (the channel's event loop)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self.cursors: dict[int, Cursor] = {}
        self.listeners: list[AckListener] = []
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # unreadable: start empty rather than refuse to start (the ledger still dedups)
            log.error("discord: %s unreadable (%s); catch-up starts from live", self.path, exc)
            return
        for key, value in (raw.get("channels") or {}).items():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.cursors[int(key)] = Cursor(
                    last=int(value["last"]), guild=value.get("guild"), parent=value.get("parent")
                )

    def get(self, channel_id: int) -> Cursor | None:
        """The stored cursor of ``channel_id``, or None for a channel never heard from."""
        return self.cursors.get(channel_id)

    def known(self, channel_id: int, guild: int | None, parent: int | None) -> None:
        """Remember a channel's guild/parent (history payloads carry neither)."""
        cursor = self.cursors.get(channel_id)
        if cursor is not None and (guild or parent):
            cursor.guild = guild or cursor.guild
            cursor.parent = parent or cursor.parent

    def advance(
        self, channel_id: int, message_id: int, guild: int | None = None, parent: int | None = None
    ) -> None:
        """Move the channel's cursor to ``message_id`` (never back) and store it durably."""
        cursor = self.cursors.get(channel_id)
        if cursor is None:
            self.cursors[channel_id] = Cursor(message_id, guild, parent)
            self._save()
        elif message_id > cursor.last:
            cursor.last = message_id
            cursor.guild = guild or cursor.guild
            cursor.parent = parent or cursor.parent
            self._save()
        for listener in list(self.listeners):
            listener(channel_id, message_id)

    def _save(self) -> None:
        data = {
            "channels": {
                str(cid): {"last": c.last, "guild": c.guild, "parent": c.parent}
                for cid, c in self.cursors.items()
            }
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
