"""The plugin as the bridge sees it: entry point, strict config, token safety."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from agentbridge.config import ConfigError, parse_config
from agentbridge.plugin.manager import build_plugin_manager
from agentbridge.plugin.protocols import Channel

from agentbridge_slack import SlackChannel, parse_settings
from agentbridge_slack.settings import APP_TOKEN_ENV, BOT_TOKEN_ENV, load_tokens
from agentbridge_slack.testing import APP_TOKEN, BOT_TOKEN


def test_plugin_loads_through_the_real_entry_point(monkeypatch) -> None:
    monkeypatch.delenv("AGENTBRIDGE_LOAD_PLUGINS", raising=False)
    host = build_plugin_manager()
    [report] = [r for r in host.reports if r.name == "slack"]
    assert report.loaded, report.error
    assert "slack" not in host.channels(parse_config({}))  # installed ≠ enabled
    config = parse_config({"channels": {"slack": {"allowed_users": ["U1"]}}})
    channel = host.channels(config)["slack"]
    assert isinstance(channel, SlackChannel) and isinstance(channel, Channel)
    with pytest.raises(ConfigError, match=r"unknown key channels\.slack\.'alowed_users'"):
        host.channels(parse_config({"channels": {"slack": {"alowed_users": ["U1"]}}}))


def test_bad_ids_are_one_line() -> None:
    for bad in ({"allowed_users": [123]}, {"allowed_teams": ["X1"]}, {"base_url": "ftp://x"}):
        with pytest.raises(ConfigError) as caught:
            parse_settings(bad)
        assert "\n" not in str(caught.value)


def test_token_files_must_be_private_and_well_formed(tmp_path: Path) -> None:
    bot, app = tmp_path / "bot", tmp_path / "app"
    bot.write_text("xoxb-1-very-secret\n")
    app.write_text("xapp-1-very-secret\n")
    os.chmod(bot, 0o644)
    os.chmod(app, 0o600)
    settings = parse_settings({"bot_token_file": str(bot), "app_token_file": str(app)})
    with pytest.raises(ConfigError) as caught:
        load_tokens(settings, env={})
    assert "chmod 600" in str(caught.value) and "secret" not in str(caught.value)
    os.chmod(bot, 0o600)
    assert load_tokens(settings, env={}) == ("xoxb-1-very-secret", "xapp-1-very-secret")
    app.write_text("xoxb-wrong-kind")
    with pytest.raises(ConfigError, match="xapp") as caught:
        load_tokens(settings, env={})
    assert "wrong-kind" not in str(caught.value)


def test_tokens_from_env_or_a_clear_error() -> None:
    env = {BOT_TOKEN_ENV: BOT_TOKEN, APP_TOKEN_ENV: APP_TOKEN}
    assert load_tokens(parse_settings({}), env=env) == (BOT_TOKEN, APP_TOKEN)
    with pytest.raises(ConfigError, match=APP_TOKEN_ENV):
        load_tokens(parse_settings({}), env={BOT_TOKEN_ENV: BOT_TOKEN})


async def test_tokens_never_logged(fake, start_channel, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    channel = await start_channel()
    fake.user_message("D0ALICE", "UALICE", "hi")
    fake.fail_next("invalid_auth")
    from agentbridge.plugin.protocols import DeliveryError
    from agentbridge.testing import async_wait_until

    async def stored() -> bool:
        return bool(fake.unacked() == [] and fake.envelopes)

    await async_wait_until(stored, what="acked")
    from agentbridge.models import OutboxItem
    from agentbridge.states import OutboxState

    item = OutboxItem(1, None, "slack", "D0ALICE", "x", "k", None, OutboxState.SENDING,
                      0, 0.0, 0.0, None, None, 0.0, 0.0)  # fmt: skip
    with pytest.raises(DeliveryError):
        await channel.deliver(item)
    assert "secret" not in caplog.text  # both test tokens end in "-secret"
