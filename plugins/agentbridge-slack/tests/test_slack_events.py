"""``mode = "events"``: the Events API over HTTP, signed requests only, the 200 is the ack."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agentbridge.config import ConfigError
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing import async_wait_until
from slack_helpers import ALICE, CHAN, DM, MALLORY, ledger_ingest, open_request, write_secret

from agentbridge_slack import SlackChannel, parse_settings
from agentbridge_slack.settings import load_tokens
from agentbridge_slack.testing import BOT_TOKEN, SIGNING_SECRET, Envelope, FakeSlack


@pytest.fixture
async def events(fake: FakeSlack, ledger: Ledger, tmp_path: Path) -> AsyncIterator[SlackChannel]:
    """A channel in events mode on a free port; the fake posts its envelopes there."""
    table = {
        "mode": "events",
        "bot_token_file": str(write_secret(tmp_path / "bot", BOT_TOKEN)),
        "signing_secret_file": str(write_secret(tmp_path / "signing", SIGNING_SECRET)),
        "allowed_users": [ALICE],
        "base_url": fake.base_url,
        "listen_port": 0,
    }
    commits: list[tuple[str, float]] = []
    channel = SlackChannel(parse_settings(table), env={})
    channel.commits = commits  # type: ignore[attr-defined]
    ctx = ChannelContext("slack", table, ledger_ingest(ledger, commits), tmp_path / "state")
    await channel.start(ctx)
    assert channel.events is not None
    fake.events_url = f"http://127.0.0.1:{channel.events.port}/slack/events"
    try:
        yield channel
    finally:
        await channel.stop()


async def answered(env: Envelope, times: int = 1) -> None:
    async def check() -> bool:
        return len(env.statuses) >= times

    await async_wait_until(check, timeout=10, what="the HTTP answer")


def last(fake: FakeSlack) -> Envelope:
    return list(fake.envelopes.values())[-1]


async def test_signed_events_are_stored_before_the_200(
    fake: FakeSlack, ledger: Ledger, events: SlackChannel
) -> None:
    msg = fake.user_message(DM, ALICE, "hello over http")
    env = last(fake)
    await answered(env)
    assert env.statuses == [200]
    [row] = await ledger.list_messages(channel="slack")
    assert (row.conversation, row.text, row.platform_id) == (
        DM,
        "hello over http",
        f"{DM}:{msg['ts']}",
    )
    [(_key, committed)] = events.commits  # type: ignore[attr-defined]
    assert env.ack_times[0] >= committed
    fake.redeliver(env.envelope_id)  # X-Slack-Retry-Num: 1
    await answered(env, times=2)
    assert env.statuses == [200, 200] and len(await ledger.list_messages(channel="slack")) == 1
    fake.user_message(DM, MALLORY, "let me in")
    await answered(last(fake))
    assert last(fake).statuses == [200] and events.refused == 1  # answered, never stored


async def test_unsigned_stale_or_forged_requests_are_refused(
    fake: FakeSlack, ledger: Ledger, events: SlackChannel
) -> None:
    body = json.dumps({"type": "event_callback", "team_id": "T1", "event": {
        "type": "message", "channel": DM, "user": ALICE, "text": "forged", "ts": "1.000001",
        "channel_type": "im"}}).encode()  # fmt: skip
    kind = "application/json"
    assert (await fake.post_signed(body, kind, secret="not-the-secret"))[0] == 401
    stale = int(time.time()) - 600  # a replay of a request ten minutes old
    assert (await fake.post_signed(body, kind, timestamp=stale))[0] == 401
    bad = {"X-Slack-Request-Timestamp": "soon"}
    assert (await fake.post_signed(body, kind, headers=bad))[0] == 401
    assert await ledger.list_messages(channel="slack") == []
    assert events.events is not None and events.events.rejected == 3
    status, text = await fake.post_signed(
        json.dumps({"type": "url_verification", "challenge": "c-123"}).encode(), kind
    )
    assert (status, json.loads(text)) == (200, {"challenge": "c-123"})
    assert (await fake.post_signed(body, kind))[0] == 200  # the real signature: taken
    assert [r.text for r in await ledger.list_messages(channel="slack")] == ["forged"]


async def test_a_failed_ingest_answers_500_so_slack_retries(
    fake: FakeSlack, ledger: Ledger, events: SlackChannel, tmp_path: Path
) -> None:
    real = ledger_ingest(ledger)
    failing = {"on": True}

    async def flaky(*args, **kwargs):
        if failing["on"]:
            raise OSError("disk full")
        return await real(*args, **kwargs)

    assert events._ctx is not None
    events._ctx.ingest = flaky
    fake.user_message(DM, ALICE, "keep me")
    env = last(fake)
    await answered(env)
    assert env.statuses == [500] and env.ack_times == []
    failing["on"] = False
    fake.redeliver(env.envelope_id)
    await answered(env, times=2)
    assert env.statuses == [500, 200]
    assert [r.text for r in await ledger.list_messages(channel="slack")] == ["keep me"]


async def test_clicks_and_slash_commands_come_as_forms(
    fake: FakeSlack, ledger: Ledger, events: SlackChannel
) -> None:
    top = fake.user_message(CHAN, ALICE, "go", mention=True)
    await answered(last(fake))
    k3y45 = await open_request(ledger, f"{CHAN}:{top['ts']}")
    item = await ledger.enqueue_reply(
        "slack", f"{CHAN}:{top['ts']}", f'Permission needed: Bash ls — reply "yes {k3y45}" or '
        f'"no {k3y45}"', key="permission:1:ask",
    )  # fmt: skip
    await events.deliver(item)
    click = fake.click(fake.posted[-1], ALICE, "Deny")
    await answered(click)
    command = fake.slash(DM, ALICE, "/agentbridge", "status")
    await answered(command)
    assert click.statuses == [200] and command.statuses == [200]
    rows = await ledger.list_messages(channel="slack")
    assert [(r.conversation, r.text) for r in rows] == [
        (f"{CHAN}:{top['ts']}", "go"),
        (f"{CHAN}:{top['ts']}", f"no {k3y45}"),
        (DM, "/status"),
    ]

    async def edited() -> bool:
        return bool(fake.updates)

    await async_wait_until(edited, timeout=10, what="the question edited")


def test_events_mode_needs_a_signing_secret_not_an_app_token(tmp_path: Path) -> None:
    bot = write_secret(tmp_path / "bot", BOT_TOKEN)
    settings = parse_settings({"mode": "events", "bot_token_file": str(bot)})
    with pytest.raises(ConfigError, match=r"signing secret.*AGENTBRIDGE_SLACK_SIGNING_SECRET"):
        load_tokens(settings, env={})
    env = {"AGENTBRIDGE_SLACK_SIGNING_SECRET": SIGNING_SECRET}
    assert load_tokens(settings, env=env) == (BOT_TOKEN, SIGNING_SECRET)
    for bad in ({"mode": "webhook"}, {"listen_port": 70000}, {"events_path": "events"}):
        with pytest.raises(ConfigError):
            parse_settings(bad)


async def test_a_port_in_use_is_one_config_error(
    fake: FakeSlack, ledger: Ledger, events: SlackChannel, tmp_path: Path
) -> None:
    assert events.events is not None
    table = {
        "mode": "events",
        "bot_token_file": str(tmp_path / "bot"),
        "signing_secret_file": str(tmp_path / "signing"),
        "base_url": fake.base_url,
        "listen_port": events.events.port,  # taken by the first channel
    }
    second = SlackChannel(parse_settings(table), env={})
    ctx = ChannelContext("slack", table, ledger_ingest(ledger), tmp_path / "state2")
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:\d+"):
        await second.start(ctx)
    await second.stop()
