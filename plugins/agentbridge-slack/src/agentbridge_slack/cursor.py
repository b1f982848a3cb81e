"""The last seen ts per Slack conversation, kept under the channel's state dir.

Catch-up after downtime reads ``conversations.history`` from this ts on. It advances only
after the message at that ts was ingested (or refused), so a crash in between makes the next
catch-up read that message again — and ingest, idempotent on ``channel:ts``, stores it once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class Cursor:
    """A small JSON file ``{channel_id: ts}``, rewritten atomically on every advance."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, str] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict):
            self.seen = {str(k): str(v) for k, v in data.items() if isinstance(v, str)}

    def get(self, channel: str) -> str | None:
        """The newest ts handled in ``channel``, or None if never seen."""
        return self.seen.get(channel)

    def advance(self, channel: str, ts: str) -> None:
        """Record ``ts`` if newer (Slack ts strings compare as decimals)."""
        old = self.seen.get(channel)
        if old is not None and float(old) >= float(ts):
            return
        self.seen[channel] = ts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.seen, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)
