"""``agentbridge doctor`` (the real CLI, a subprocess) against the fake Bot API: getMe proves
the token and the URL; each missing piece is one exact line, and the token is never printed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from telegram_helpers import ALICE

from agentbridge_telegram.testing import FakeBotApi


async def doctor(fake: FakeBotApi, tmp_path: Path, table: str, token: str | None) -> str:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\n[ledger]\npath = "{state / "ledger.db"}"\n'
        f'[channels.telegram]\nbase_url = "{fake.base_url}"\n{table}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
    env.update(AGENTBRIDGE_CONFIG=str(config), AGENTBRIDGE_LOAD_PLUGINS="telegram")
    if token is not None:
        env["AGENTBRIDGE_TELEGRAM_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentbridge.cli", "doctor", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


def line(text: str, what: str) -> str:
    [found] = [row for row in text.splitlines() if row[4:].startswith(what + " ")]
    return found


async def test_doctor_lines_for_telegram(fake: FakeBotApi, tmp_path: Path) -> None:
    users = f"allowed_users = [{ALICE}]\n"
    out = await doctor(fake, tmp_path, users, fake.token)
    assert line(out, "telegram api") == "ok  telegram api   getMe: @fake_bot"
    assert line(out, "telegram token") == "ok  telegram token from $AGENTBRIDGE_TELEGRAM_TOKEN"
    assert line(out, "telegram config") == "ok  telegram config 1 allowed user(s)"
    assert "getMe" in fake.calls and "getUpdates" not in fake.calls  # a live poll untouched
    out = await doctor(fake, tmp_path, "", "999:wrong")
    assert line(out, "telegram api") == "ERR telegram api   getMe: the bot token was rejected"
    assert line(out, "telegram config").startswith("ERR telegram config channels.telegram."
                                                   "allowed_users is empty")  # fmt: skip
    assert "999:wrong" not in out
    out = await doctor(fake, tmp_path, users, None)
    assert line(out, "telegram token").startswith(
        "ERR telegram token channels.telegram needs a bot token"
    )
    await fake.stop()
    out = await doctor(fake, tmp_path, users, fake.token)
    assert line(out, "telegram api").startswith(f"ERR telegram api   cannot reach {fake.base_url}")
    assert fake.token not in out
