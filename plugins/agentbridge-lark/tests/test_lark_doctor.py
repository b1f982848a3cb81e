"""``agentbridge doctor`` (the real CLI, a subprocess) against the fake Lark: a tenant token
fetched proves the app id, the secret and the domain; each missing piece is one exact line,
and the secret is never printed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from agentbridge.config import parse_config
from lark_helpers import ALICE, write_secret

from agentbridge_lark.doctor import domain_name
from agentbridge_lark.settings import parse_settings
from agentbridge_lark.testing import APP_ID, APP_SECRET, FakeLark


async def doctor(tmp_path: Path, table: str) -> str:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{state}"\n[ledger]\npath = "{state / "ledger.db"}"\n[channels.lark]\n{table}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBRIDGE")}
    env.update(AGENTBRIDGE_CONFIG=str(config), AGENTBRIDGE_LOAD_PLUGINS="lark")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentbridge.cli", "doctor", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return out.decode()


def line(text: str, what: str) -> str:
    [found] = [row for row in text.splitlines() if row[4:].startswith(what + " ")]
    return " ".join(found.split())


async def test_doctor_lines_for_lark(fake: FakeLark, tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "lark.secret", APP_SECRET)
    base = f'app_id = "{APP_ID}"\ndomain = "{fake.base_url}"\napp_secret_file = "{secret}"\n'
    users = f'allowed_users = ["{ALICE}"]\n'
    out = await doctor(tmp_path, base + users)
    assert line(out, "lark api") == (
        f"ok lark api tenant token fetched from {fake.base_url} for {APP_ID}"
    ), out
    assert line(out, "lark credentials") == (
        f"ok lark credentials app id from app_id, secret from {secret} (mode 0600)"
    )
    assert line(out, "lark config") == f"ok lark config 1 allowed user(s); domain {fake.base_url}"
    assert fake.connects == 0 and fake.send_requests == 0  # no long connection, no chat
    write_secret(secret, "wrong-secret")
    out = await doctor(tmp_path, base)
    assert line(out, "lark api").startswith("ERR lark api tenant token from")
    assert "refused the app id/secret (code 10014" in line(out, "lark api")
    assert "allowed_users is empty" in line(out, "lark config")
    assert "wrong-secret" not in out and APP_SECRET not in out
    secret.chmod(0o644)
    out = await doctor(tmp_path, base + users)
    assert "chmod 600" in line(out, "lark credentials") and "lark api" not in out
    secret.unlink()
    out = await doctor(tmp_path, base + users)
    assert line(out, "lark credentials").startswith("ERR lark credentials channels.lark.")
    assert str(secret) in line(out, "lark credentials")


def test_the_domain_is_named() -> None:
    def named(domain: str) -> str:
        table = {"app_id": APP_ID, "domain": domain}
        config = parse_config({"agents": {"a": {"runtime": "demo"}}, "channels": {"lark": table}})
        return domain_name(parse_settings(dict(config.channels["lark"])))

    assert named("feishu").startswith("Feishu (https://open.")
    assert named("lark").startswith("Lark (https://open.")
    assert named("http://127.0.0.1:9") == "http://127.0.0.1:9"
