"""The plugin as the bridge sees it: entry point, strict config, credentials, domains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentbridge.config import ConfigError, parse_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.manager import build_plugin_manager
from agentbridge.plugin.protocols import Channel, ChannelContext
from agentbridge.testing import async_wait_until
from lark_helpers import ALICE, ledger_ingest, write_secret

from agentbridge_lark import LarkChannel, load_credentials, parse_settings
from agentbridge_lark.pbwire import DATA, Frame, decode, encode
from agentbridge_lark.plugin import host_woke
from agentbridge_lark.settings import DOMAINS
from agentbridge_lark.testing import APP_ID, FakeLark


def test_plugin_loads_through_the_real_entry_point(monkeypatch) -> None:
    monkeypatch.delenv("AGENTBRIDGE_LOAD_PLUGINS", raising=False)
    host = build_plugin_manager()
    [report] = [r for r in host.reports if r.name == "lark"]
    assert report.loaded, report.error
    assert report.source == "agentbridge-lark"
    assert "lark" not in host.channels(parse_config({}))  # installed ≠ enabled
    config = parse_config({"channels": {"lark": {"allowed_users": [ALICE], "domain": "lark"}}})
    channel = host.channels(config)["lark"]
    assert isinstance(channel, LarkChannel) and isinstance(channel, Channel)
    assert channel.settings is not None and channel.settings.base_url == DOMAINS["lark"]


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"allowed_users": [""]}, "non-empty"),
        ({"allowed_chats": ["C123"]}, "oc_"),
        ({"request_timeout": 0}, "> 0"),
        ({"domain": "larksuite"}, "feishu"),
        ({"allow_dms": "yes"}, "wrong type"),
        ({"alowed_users": []}, "unknown key"),
    ],
)
def test_bad_tables_are_one_line(table: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=r"channels\.lark") as caught:
        parse_settings(table)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_domains() -> None:
    assert parse_settings({}).base_url == DOMAINS["feishu"]
    assert parse_settings({"domain": "lark"}).base_url == DOMAINS["lark"]
    assert parse_settings({"domain": "http://127.0.0.1:9/"}).base_url == "http://127.0.0.1:9"


def test_credentials_from_files_or_env(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "s", "shh")
    settings = parse_settings({"app_id": "cli_1", "app_secret_file": str(secret)})
    assert load_credentials(settings, env={}) == ("cli_1", "shh")
    env = {"AGENTBRIDGE_LARK_APP_ID": "cli_2", "AGENTBRIDGE_LARK_APP_SECRET": "env-secret"}
    assert load_credentials(parse_settings({}), env=env) == ("cli_2", "env-secret")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials(settings, env={})
    with pytest.raises(ConfigError, match="AGENTBRIDGE_LARK_APP_SECRET"):
        load_credentials(parse_settings({"app_id": "cli_1"}), env={})


async def test_rejected_credentials_stop_the_start(
    fake: FakeLark, ledger: Ledger, tmp_path: Path
) -> None:
    wrong = write_secret(tmp_path / "wrong", "not-the-secret")
    table = {"app_id": APP_ID, "app_secret_file": str(wrong), "domain": fake.base_url}
    channel = LarkChannel(parse_settings(table), env={})
    ctx = ChannelContext("lark", table, ledger_ingest(ledger), tmp_path / "state", ledger=ledger)
    with pytest.raises(ConfigError, match="rejected"):
        await channel.start(ctx)
    await channel.stop()
    assert fake.connects == 0 and "not-the-secret" not in str(channel.status())


def test_frame_codec_round_trip() -> None:
    frame = Frame(
        seq_id=2**40,
        log_id=3,
        service=7,
        method=DATA,
        headers=[("type", "event"), ("message_id", "é")],
        payload=b"{}",
    )
    assert decode(encode(frame)) == frame


def test_frame_codec_agrees_with_the_sdks_generated_class() -> None:
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame as SdkFrame

    ours = Frame(seq_id=5, log_id=6, service=7, method=DATA, headers=[("sum", "1")], payload=b"x")
    theirs = SdkFrame()
    theirs.ParseFromString(encode(ours))
    assert (theirs.SeqID, theirs.service, theirs.method, theirs.payload) == (5, 7, DATA, b"x")
    assert [(h.key, h.value) for h in theirs.headers] == [("sum", "1")]
    assert decode(theirs.SerializeToString()) == ours


async def test_host_woke_reconnects_and_catches_up(fake: FakeLark, ledger: Ledger, start_channel):
    channel = await start_channel()
    connects, reconnects = fake.connects, channel.reconnects
    host_woke(slept_seconds=600.0)

    async def again() -> bool:
        return fake.connects > connects and channel.reconnects > reconnects

    await async_wait_until(again, timeout=20, what="a new long connection after the wake")
