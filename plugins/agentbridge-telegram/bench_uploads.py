"""Files out to Telegram: what the bridge adds to an upload, as a ratio to a raw upload.

    .venv/bin/python plugins/agentbridge-telegram/bench_uploads.py [--n 10]

Per file size, against the fake Bot API on loopback:

- floor: one multipart ``sendDocument`` POST of the bytes, straight from aiohttp;
- bridge: the outbox relay delivering an agent-file row (``delivery/outfiles.py`` checks and
  reads the file, the channel uploads it, the ledger records ``sent`` with FULL sync).

Prints p50s and the ratio bridge / floor measured in the same run; JSON at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from agentbridge.config import OutboxConfig
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.delivery.outfiles import FileRoots
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext

from agentbridge_telegram import TelegramChannel, parse_settings
from agentbridge_telegram.testing import FakeBotApi

SIZES = (64 * 1024, 1024 * 1024, 10 * 1024 * 1024)
CHAT = 111


async def floor(session: aiohttp.ClientSession, fake: FakeBotApi, data: bytes) -> float:
    """One raw upload of the bytes already in memory (no file, no checks, no ledger)."""
    form = aiohttp.FormData()
    form.add_field("chat_id", str(CHAT))
    form.add_field("document", data, filename="f.bin")
    start = time.perf_counter()
    async with session.post(f"{fake.base_url}/bot{fake.token}/sendDocument", data=form) as r:
        assert r.status == 200, await r.text()
    return time.perf_counter() - start


def make_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def bridge(relay: OutboxRelay, ledger: Ledger, path: Path, size: int, i: int) -> float:
    """One agent-file row through the relay: check, read, upload, record ``sent``."""
    key = f"{FILE_KEY_PREFIX}agent-initiated:demo:{size}-{i}"
    await ledger.enqueue_reply("telegram", str(CHAT), file_text(path, size), key)
    item = await ledger.claim_due_reply()
    assert item is not None
    start = time.perf_counter()
    await relay.deliver(item)
    took = time.perf_counter() - start
    assert (await ledger.get_reply(item.id)).state == "sent"
    return took


async def main(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cwd = root / "work"
        cwd.mkdir()
        token = root / "token"
        ledger = await Ledger.open(root / "ledger.db")
        async with FakeBotApi() as fake:
            token.write_text(fake.token)
            os.chmod(token, 0o600)
            table = {"token_file": str(token), "allowed_users": [CHAT], "base_url": fake.base_url}
            channel = TelegramChannel(parse_settings(table), env={})

            async def ingest(*args: Any, **kwargs: Any) -> Any:
                raise AssertionError("no inbound in this bench")

            await channel.start(ChannelContext("telegram", table, ingest, root, ledger))
            relay = OutboxRelay(
                ledger, {"telegram": channel}, OutboxConfig(), files=FileRoots({"demo": cwd})
            )
            out: dict[str, Any] = {}
            session = aiohttp.ClientSession()
            try:
                for size in SIZES:
                    path = cwd / f"file-{size}.bin"
                    data = make_file(path, size)
                    raws, bridged = [], []
                    for i in range(n + 1):  # interleaved, so load drift hits both alike
                        raws.append(await floor(session, fake, data))
                        bridged.append(await bridge(relay, ledger, path, size, i))
                    raw = statistics.median(raws[1:]) * 1000  # the first warms the pools
                    ours = statistics.median(bridged[1:]) * 1000
                    out[f"{size // 1024} KB"] = {
                        "floor_p50_ms": round(raw, 2),
                        "bridge_p50_ms": round(ours, 2),
                        "ratio": round(ours / raw, 2),
                    }
            finally:
                await session.close()
                await channel.stop()
                await ledger.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    result = asyncio.run(main(parser.parse_args().n))
    print(f"{'size':>10} {'floor p50 ms':>14} {'bridge p50 ms':>14} {'ratio':>7}")
    for name, row in result.items():
        print(f"{name:>10} {row['floor_p50_ms']:>14} {row['bridge_p50_ms']:>14} {row['ratio']:>7}")
    print(json.dumps(result))
    sys.exit(0)
