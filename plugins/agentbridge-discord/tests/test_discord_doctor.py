"""``agentbridge doctor`` (the real CLI, a subprocess) against the fake Discord: each missing
piece is one exact line; and the same missing intent really stops the bridge's gateway."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing import async_wait_until
from discord_helpers import ALICE, ledger_ingest

from agentbridge_discord import DiscordChannel, parse_settings
from agentbridge_discord.channel import INTENT_HINT
from agentbridge_discord.doctor import INTENT_OFF
from agentbridge_discord.testing import FakeDiscord


async def doctor(fake: FakeDiscord, tmp_path: Path, table: str, token: str | None) -> str:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\n[ledger]\npath = "{state / "ledger.db"}"\n'
        f'[channels.discord]\napi_base_url = "{fake.api_base_url}"\n'
        f'gateway_url = "{fake.gateway_url}"\n{table}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
    env.update(AGENTBRIDGE_CONFIG=str(config), AGENTBRIDGE_LOAD_PLUGINS="discord")
    if token is not None:
        env["AGENTBRIDGE_DISCORD_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentbridge.cli", "doctor", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == (0 if "ERR" not in text else 1), text
    return text


def line(text: str, what: str) -> str:
    [found] = [row for row in text.splitlines() if row[4:].startswith(what + " ")]
    return found


async def test_a_missing_intent_is_the_exact_line(fake: FakeDiscord, tmp_path: Path) -> None:
    users = f'allowed_users = ["{ALICE}"]\n'
    fake.app_flags = 0  # the portal switch is off
    out = await doctor(fake, tmp_path, users, fake.token)
    assert line(out, "discord intent") == f"ERR discord intent {INTENT_OFF}"
    assert line(out, "discord api").startswith("ok  discord api    logged in as user")
    assert line(out, "discord token") == "ok  discord token  from $AGENTBRIDGE_DISCORD_TOKEN"
    assert fake.token not in out
    relaxed = await doctor(fake, tmp_path, users + "message_content_intent = false\n", fake.token)
    assert line(relaxed, "discord intent") == "ok  discord intent Message Content not requested"
    fake.app_flags = 1 << 18  # GATEWAY_MESSAGE_CONTENT_LIMITED: on, for an unverified app
    fake.interactions_endpoint = "https://example.invalid/i"
    out = await doctor(fake, tmp_path, users, fake.token)
    assert line(out, "discord intent") == "ok  discord intent Message Content intent enabled"
    assert "Interactions Endpoint URL (https://example.invalid/i)" in line(out, "discord buttons")


async def test_token_users_and_reachability_lines(fake: FakeDiscord, tmp_path: Path) -> None:
    out = await doctor(fake, tmp_path, "", "wrong-token")
    assert line(out, "discord config").startswith("ERR discord config channels.discord."
                                                  "allowed_users is empty")  # fmt: skip
    assert line(out, "discord api") == (
        "ERR discord api    Discord rejected the bot token (401): reset it under Bot → Token"
    )
    assert "wrong-token" not in out
    token = tmp_path / "discord.token"
    token.write_text(fake.token)
    token.chmod(0o644)
    table = f'allowed_users = ["{ALICE}"]\ntoken_file = "{token}"\n'
    out = await doctor(fake, tmp_path, table, None)
    assert line(out, "discord token") == (
        f"ERR discord token  channels.discord.token_file {token} is readable by others "
        f"(mode 0644); run: chmod 600 {token}"
    )
    token.chmod(0o600)
    out = await doctor(fake, tmp_path, table, None)
    assert line(out, "discord token") == f"ok  discord token  from {token} (mode 0600)"
    await fake.stop()  # nothing listens there any more
    out = await doctor(fake, tmp_path, table, None)
    assert line(out, "discord api").startswith(
        f"ERR discord api    cannot reach {fake.api_base_url}"
    )
    out = await doctor(fake, tmp_path, "alowed_users = []\n", None)
    assert line(out, "discord config").startswith("ERR discord config unknown key")


async def test_the_bridge_itself_stops_on_the_missing_intent(
    fake: FakeDiscord, ledger: Ledger, token_file: Path, tmp_path: Path
) -> None:
    fake.app_flags = 0
    table = {"token_file": str(token_file), "allowed_users": [ALICE], **fake.settings_table()}
    channel = DiscordChannel(parse_settings(table), env={})
    await channel.start(ChannelContext("discord", table, ledger_ingest(ledger), tmp_path / "s"))
    try:

        async def refused() -> bool:
            return channel.fatal is not None

        await async_wait_until(refused, timeout=15, what="the 4014 close")
        assert channel.fatal == INTENT_HINT and channel.sessions == 0
    finally:
        await channel.stop()
