"""A real poller process for crash tests: the Telegram channel ingesting into a ledger file.

    python telegram_poller_proc.py BASE_URL TOKEN_FILE LEDGER MARKER_DIR [--hang-after-ingest]

After each committed ingest it appends the key to ``MARKER_DIR/ingested`` (so the test knows
the commit happened). With ``--hang-after-ingest`` it then blocks forever inside ``ingest``:
the channel is stuck exactly between the ledger commit and the offset advance, which is where
the test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_telegram import TelegramChannel, parse_settings


async def main(argv: list[str]) -> None:
    base_url, token_file, ledger_path, marker_dir = argv[:4]
    hang = "--hang-after-ingest" in argv
    marker = Path(marker_dir) / "ingested"
    ledger = await Ledger.open(Path(ledger_path))

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> IngestResult:
        result = await ledger.ingest(
            "telegram", conversation, sender, text, key=key, agent="demo", meta=meta
        )
        with marker.open("a") as out:
            out.write(f"{key}\n")
        if hang:
            await asyncio.Event().wait()
        return result

    settings = parse_settings(
        {"token_file": token_file, "allowed_users": [111], "base_url": base_url, "poll_timeout": 5}
    )
    channel = TelegramChannel(settings, env={})
    ctx = ChannelContext("telegram", {}, ingest, Path(marker_dir), ledger=ledger)
    await channel.start(ctx)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
