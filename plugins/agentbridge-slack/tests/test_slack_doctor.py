"""``agentbridge doctor`` (the real CLI, a subprocess) against the fake Slack: each missing
piece is one exact line, the scopes named from the ``x-oauth-scopes`` header."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from slack_helpers import ALICE, write_secret

from agentbridge_slack.doctor import REINSTALL, SCOPES
from agentbridge_slack.testing import APP_TOKEN, BOT_TOKEN, FakeSlack


async def doctor(fake: FakeSlack, tmp_path: Path, table: str, **tokens: str) -> str:
    """The CLI's output for ``[channels.slack]`` = ``table`` (+ base_url), tokens from env."""
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\n[ledger]\npath = "{state / "ledger.db"}"\n'
        f'[channels.slack]\nbase_url = "{fake.base_url}"\nrequest_timeout = 5\n{table}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
    env.update(AGENTBRIDGE_CONFIG=str(config), AGENTBRIDGE_LOAD_PLUGINS="slack")
    env.update({f"AGENTBRIDGE_SLACK_{k.upper()}": v for k, v in tokens.items()})
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
    return " ".join(found.split())  # the CLI pads the names into a column


async def test_token_files_auth_and_scopes_pass(fake: FakeSlack, tmp_path: Path) -> None:
    bot = write_secret(tmp_path / "bot.token", BOT_TOKEN)
    app = write_secret(tmp_path / "app.token", APP_TOKEN)
    table = f'allowed_users = ["{ALICE}"]\nbot_token_file = "{bot}"\napp_token_file = "{app}"\n'
    out = await doctor(fake, tmp_path, table)
    assert line(out, "slack config") == "ok slack config 1 allowed user(s)"
    assert line(out, "slack bot token") == f"ok slack bot token from {bot} (mode 0600)"
    assert line(out, "slack app token") == f"ok slack app token from {app} (mode 0600)"
    assert line(out, "slack api") == "ok slack api logged in as bridge (UBOT) in team T1"
    assert (
        line(out, "slack scopes") == f"ok slack scopes all {len(SCOPES)} bot token scopes granted"
    )
    assert "auth.test" in fake.calls and "apps.connections.open" not in fake.calls
    assert BOT_TOKEN not in out and APP_TOKEN not in out


async def test_missing_scopes_are_named_exactly(fake: FakeSlack, tmp_path: Path) -> None:
    fake.scopes = [s for s in SCOPES if s not in ("files:write", "reactions:write")]
    users = f'allowed_users = ["{ALICE}"]\n'
    out = await doctor(fake, tmp_path, users, bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    assert line(out, "slack scopes") == (
        "ERR slack scopes missing reactions:write (receipts), files:write (files the agent "
        f"sends): {REINSTALL}"
    )
    assert line(out, "slack bot token") == "ok slack bot token from $AGENTBRIDGE_SLACK_BOT_TOKEN"


async def test_bad_modes_tokens_and_reachability_lines(fake: FakeSlack, tmp_path: Path) -> None:
    bot = write_secret(tmp_path / "bot.token", BOT_TOKEN)
    bot.chmod(0o644)
    out = await doctor(fake, tmp_path, f'bot_token_file = "{bot}"\n')
    assert line(out, "slack config").startswith("ERR slack config channels.slack.allowed_users")
    assert line(out, "slack bot token") == (
        f"ERR slack bot token channels.slack.bot_token_file {bot} is readable by others "
        f"(mode 0644); run: chmod 600 {bot}"
    )
    assert line(out, "slack app token") == (
        "ERR slack app token channels.slack needs an app-level token (xapp-…): set"
        " app_token_file (mode 0600) or $AGENTBRIDGE_SLACK_APP_TOKEN"
    )
    assert "slack api" not in out  # no token: Slack is not asked
    users = f'allowed_users = ["{ALICE}"]\n'
    out = await doctor(fake, tmp_path, users, bot_token="xoxb-wrong", app_token=APP_TOKEN)
    assert line(out, "slack api") == (
        "ERR slack api Slack rejected the bot token (invalid_auth): copy it again from OAuth &"
        " Permissions"
    )
    assert "xoxb-wrong" not in out
    events = users + 'mode = "events"\n'
    out = await doctor(fake, tmp_path, events, bot_token=BOT_TOKEN, signing_secret="s3cret")
    assert line(out, "slack signing secret") == (
        "ok slack signing secret from $AGENTBRIDGE_SLACK_SIGNING_SECRET"
    )
    assert "slack app token" not in out
    await fake.stop()  # nothing listens there any more
    out = await doctor(fake, tmp_path, users, bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    assert line(out, "slack api").startswith(f"ERR slack api cannot reach {fake.base_url}")
    out = await doctor(fake, tmp_path, "alowed_users = []\n")
    assert line(out, "slack config").startswith("ERR slack config unknown key")
