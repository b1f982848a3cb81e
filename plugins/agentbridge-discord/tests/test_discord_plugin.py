"""The plugin as the bridge sees it: entry point, strict config, a held cursor after a failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agentbridge.config import ConfigError, parse_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.manager import build_plugin_manager
from agentbridge.plugin.protocols import Channel
from agentbridge.testing import async_wait_until
from discord_helpers import ALICE, DM, ledger_ingest

from agentbridge_discord import DiscordChannel, parse_settings
from agentbridge_discord.testing import FakeDiscord


def test_plugin_loads_through_the_real_entry_point(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AGENTBRIDGE_LOAD_PLUGINS", raising=False)
    host = build_plugin_manager()
    [report] = [r for r in host.reports if r.name == "discord"]
    assert report.loaded, report.error
    assert report.source == "agentbridge-discord"
    assert "discord" not in host.channels(parse_config({}))  # installed ≠ enabled
    config = parse_config({"channels": {"discord": {"allowed_users": [str(ALICE)]}}})
    channel = host.channels(config)["discord"]
    assert isinstance(channel, DiscordChannel) and isinstance(channel, Channel)
    assert channel.limits.max_message_length == 2000


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"allowed_users": ["me"]}, "numeric ids"),
        ({"allowed_users": [True]}, "numeric ids"),
        ({"request_timeout": 0}, "> 0"),
        ({"api_base_url": "http://127.0.0.1:1"}, "go together"),
        ({"gateway_url": "http://x", "api_base_url": "http://x"}, "ws://"),
        ({"allow_dms": "yes"}, "wrong type"),
    ],
)
def test_bad_tables_are_one_line(table: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=r"channels\.discord") as caught:
        parse_settings(table)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_quoted_and_bare_ids_are_the_same() -> None:
    settings = parse_settings({"allowed_users": [str(ALICE), ALICE], "allowed_guilds": ["7"]})
    assert settings.allowed_users == {ALICE} and settings.allowed_guilds == {7}


async def test_failed_ingest_holds_the_cursor_until_the_retry_stores_it(
    fake: FakeDiscord, ledger: Ledger, start_channel
) -> None:
    """The ledger refuses message 1 and accepts message 2: the cursor must not pass 1; the
    held channel's catch-up retry stores 1 later (order kept, one row each)."""
    real = ledger_ingest(ledger)
    failing = {"on": True}

    async def flaky(conversation: str, sender: str, text: str, **kw: Any) -> Any:
        if failing["on"] and text == "one":
            raise OSError("disk full")
        return await real(conversation, sender, text, **kw)

    channel = await start_channel(ingest=flaky)
    await fake.post(DM, ALICE, "one")
    await fake.post(DM, ALICE, "two")

    async def both_seen() -> bool:
        return channel.ingest_failures >= 1 and len(await ledger.list_messages()) >= 1

    await async_wait_until(both_seen, timeout=10, what="one failure, one row")
    assert channel.cursors is not None
    cursor = channel.cursors.get(DM)
    assert cursor is None or cursor.last < int(fake.history[DM][0]["id"]), "cursor passed 1"
    assert DM in channel.status()["held"]
    failing["on"] = False

    async def stored() -> bool:
        return len(await ledger.list_messages()) == 2 and DM not in channel.status()["held"]

    await async_wait_until(stored, timeout=15, what="the retry storing message 1")
    await asyncio.sleep(0)
    texts = sorted(m.text for m in await ledger.list_messages())
    assert texts == ["one", "two"]
    assert channel.cursors.get(DM).last == int(fake.history[DM][1]["id"])
