"""A real channel process for the crash test: ``python lark_bridge_proc.py BASE_URL DIR [--hang]``.

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

from agentbridge_lark import LarkChannel, parse_settings
from agentbridge_lark.testing import APP_ID


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
    ) -> IngestResult:
        result = await ledger.ingest(
            "lark", conversation, sender, text, key=key, agent="demo", meta=meta
        )
        with (folder / "ingested").open("a") as out:
            out.write(f"{key}\n")
        if hang:
            await asyncio.Event().wait()
        return result

    table = {
        "app_id": APP_ID,
        "app_secret_file": str(folder / "secret"),
        "allowed_users": ["ou_alice"],
        "domain": base_url,
    }
    channel = LarkChannel(parse_settings(table), env={})
    await channel.start(ChannelContext("lark", table, ingest, folder / "state", ledger=ledger))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
