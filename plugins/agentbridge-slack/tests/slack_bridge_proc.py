"""A real channel process for the crash test: ``python slack_bridge_proc.py BASE_URL DIR [--hang]``.

After each committed ingest it appends the key to ``DIR/ingested``; with ``--hang`` it then
blocks inside ingest, i.e. between the ledger commit and the ack, where the test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agentbridge.ledger.sqlite import IngestResult, Ledger
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_slack import SlackChannel, parse_settings


async def main(argv: list[str]) -> None:
    base_url, folder = argv[0], Path(argv[1])
    hang = "--hang" in argv
    ledger = await Ledger.open(folder / "ledger.db")

    async def ingest(
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        agent: str | None = None,
        attachments: Any = (),
    ) -> IngestResult:
        result = await ledger.ingest("slack", conversation, sender, text, key=key, agent="demo",
                                     meta=meta)  # fmt: skip
        with (folder / "ingested").open("a") as out:
            out.write(f"{key}\n")
        if hang:
            await asyncio.Event().wait()
        return result

    table = {"bot_token_file": str(folder / "bot"), "app_token_file": str(folder / "app"),
             "allowed_users": ["UALICE"], "base_url": base_url}  # fmt: skip
    channel = SlackChannel(parse_settings(table), env={})
    await channel.start(ChannelContext("slack", table, ingest, folder, ledger=ledger))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
