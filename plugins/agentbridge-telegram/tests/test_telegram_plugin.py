"""The plugin as the bridge sees it: entry point, config, token safety, webhook mode."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiohttp
import pytest
from agentbridge.config import ConfigError, parse_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.manager import build_plugin_manager
from agentbridge.plugin.protocols import Channel, ChannelContext, DeliveryError
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT, ledger_ingest

from agentbridge_telegram import TelegramChannel, parse_settings
from agentbridge_telegram.api import RedactingFilter, redact
from agentbridge_telegram.settings import DEFAULT_BASE_URL, TOKEN_ENV, load_token
from agentbridge_telegram.testing import FakeBotApi

# ------------------------------------------------------------------ entry point


def test_plugin_loads_through_the_real_entry_point(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AGENTBRIDGE_LOAD_PLUGINS", raising=False)
    host = build_plugin_manager()
    [report] = [r for r in host.reports if r.name == "telegram"]
    assert report.loaded, report.error
    assert report.source == "agentbridge-telegram"
    assert {"register_channels", "host_woke"} <= set(report.hooks)

    assert "telegram" not in host.channels(parse_config({}))  # installed ≠ enabled
    config = parse_config(
        {"channels": {"telegram": {"token_file": str(tmp_path / "t"), "allowed_users": [ALICE]}}}
    )
    channel = host.channels(config)["telegram"]
    assert isinstance(channel, TelegramChannel)
    assert isinstance(channel, Channel)
    assert channel.limits.max_message_length == 4096


def test_bad_table_stops_with_one_line() -> None:
    host = build_plugin_manager()
    config = parse_config({"channels": {"telegram": {"alowed_users": [1]}}})
    with pytest.raises(ConfigError, match=r"unknown key channels\.telegram\.'alowed_users'"):
        host.channels(config)


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_validation() -> None:
    settings = parse_settings({})
    assert settings.allowed_users == frozenset()  # deny by default
    assert settings.base_url == DEFAULT_BASE_URL
    assert (settings.mode, settings.parse_mode, settings.poll_timeout) == ("polling", "HTML", 30)
    assert parse_settings({"allowed_users": ["42", 7]}).allowed_users == {42, 7}
    for bad in (
        {"allowed_users": ["alice"]},
        {"mode": "push"},
        {"parse_mode": "Markdown"},
        {"poll_timeout": 99},
        {"base_url": "ftp://x"},
    ):
        with pytest.raises(ConfigError) as caught:
            parse_settings(bad)
        assert "\n" not in str(caught.value)


def test_token_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("123:secret\n")
    os.chmod(path, 0o644)
    settings = parse_settings({"token_file": str(path)})
    with pytest.raises(ConfigError) as caught:
        load_token(settings, env={})
    message = str(caught.value)
    assert "readable by others" in message and "chmod 600" in message
    assert "secret" not in message and "\n" not in message
    os.chmod(path, 0o600)
    assert load_token(settings, env={}) == "123:secret"


def test_token_from_env_or_a_clear_error() -> None:
    assert load_token(parse_settings({}), env={TOKEN_ENV: " 1:abc "}) == "1:abc"
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        load_token(parse_settings({}), env={})


# ------------------------------------------------------------------ token never logged


def test_redaction() -> None:
    url = "https://example/bot123456:AA-bb_cc/sendMessage"
    assert redact(url) == "https://example/bot<token>/sendMessage"
    assert redact("x 999:zz y", token="999:zz") == "x <token> y"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s", (url,), None)
    RedactingFilter().filter(record)
    assert "AA-bb_cc" not in record.getMessage()


async def test_token_never_in_logs_or_errors(
    fake: FakeBotApi, ledger: Ledger, start_channel, caplog, tmp_path
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = await start_channel()
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="hi")

    async def confirmed() -> bool:
        return fake.confirmed_offset > update["update_id"]

    await async_wait_until(confirmed, what="ingest")
    item = await ledger.enqueue_reply("telegram", str(CHAT), "x", key="k1")
    errors: list[BaseException] = []
    for fault in ("429", "blocked", "500"):
        fake.fail_next(fault)
        with pytest.raises(DeliveryError) as caught:
            await channel.deliver(item)
        errors.append(caught.value)
    await fake.stop()  # network errors: aiohttp's messages carry the request URL
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(item)
    errors.append(caught.value)
    # a channel pointed at a dead port logs its getMe failure at start
    dead = TelegramChannel(
        parse_settings({"base_url": fake.base_url, "allowed_users": [ALICE]}),
        env={TOKEN_ENV: fake.token},
    )
    await dead.start(ChannelContext("telegram", {}, ledger_ingest(ledger), tmp_path))
    await dead.stop()
    secret = fake.token.split(":", 1)[1]
    assert caplog.text  # something was logged…
    assert secret not in caplog.text  # …but never the token
    for error in errors:
        assert secret not in str(error) and secret not in repr(error)
        assert error.__cause__ is None


async def test_rejected_token_stops_start_with_one_line(fake, ledger, tmp_path) -> None:
    channel = TelegramChannel(
        parse_settings({"base_url": fake.base_url}), env={TOKEN_ENV: "1:wrong"}
    )
    with pytest.raises(ConfigError, match="token was rejected"):
        await channel.start(ChannelContext("telegram", {}, ledger_ingest(ledger), tmp_path))
    await channel.stop()


# ------------------------------------------------------------------ webhook mode


async def test_webhook_checks_the_secret_and_acks_after_commit(
    fake: FakeBotApi, ledger: Ledger, start_channel
) -> None:
    channel = await start_channel(
        mode="webhook",
        webhook_port=0,
        webhook_secret="s3cret-value",
        webhook_url="https://bridge.example/telegram/webhook",
    )
    assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret-value"
    url = f"http://127.0.0.1:{channel.webhook_port}/telegram/webhook"
    update = {
        "update_id": 5,
        "message": {
            "message_id": 9,
            "from": {"id": ALICE},
            "chat": {"id": CHAT, "type": "private"},
            "text": "via webhook",
        },
    }
    header = "X-Telegram-Bot-Api-Secret-Token"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=update) as resp:
            assert resp.status == 401
        async with http.post(url, json=update, headers={header: "wrong"}) as resp:
            assert resp.status == 401
        assert await ledger.list_messages(channel="telegram") == []
        for _ in range(2):  # Telegram retries: still one row
            async with http.post(url, json=update, headers={header: "s3cret-value"}) as resp:
                assert resp.status == 200
    [row] = await ledger.list_messages(channel="telegram")
    assert (row.text, row.platform_id) == ("via webhook", f"{CHAT}:9")


async def test_webhook_mode_needs_a_secret(fake, ledger, token_file, tmp_path) -> None:
    channel = TelegramChannel(
        parse_settings(
            {"token_file": str(token_file), "base_url": fake.base_url, "mode": "webhook"}
        ),
        env={},
    )
    with pytest.raises(ConfigError, match="webhook_secret"):
        await channel.start(ChannelContext("telegram", {}, ledger_ingest(ledger), tmp_path))
    await channel.stop()


async def test_aiohttp_errors_that_quote_the_url_are_redacted() -> None:
    """aiohttp's InvalidURL carries the whole request URL, token included."""
    import traceback

    from agentbridge_telegram.api import BotApi, TelegramNetworkError

    api = BotApi("123:SECRETTOKEN", "http://[bad", 3)
    try:
        with pytest.raises(TelegramNetworkError) as caught:
            await api.call("getMe")
    finally:
        await api.close()
    text = "".join(traceback.format_exception(caught.value))
    assert "bot<token>/getMe" in text and "SECRETTOKEN" not in text
