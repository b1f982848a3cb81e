"""Reading a channel's secret (bot token, app token, signing secret) for plugin authors.

Every chat plugin needs the same rule, so it lives here once: a secret comes from a file
that only its owner can read, or from an environment variable; a file others can read is
refused rather than warned about (anyone who reads it can impersonate the bot and talk to
the agents), and an error never echoes the value.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from agentbridge.config import ConfigError


def read_secret(
    path: Path | None,
    *,
    where: str,
    env_name: str,
    env: Mapping[str, str] | None = None,
    prefix: str = "",
    what: str = "a bot token",
) -> str:
    """The secret from ``path`` (mode 0600) or ``$env_name``, else one clear ``ConfigError``.

    ``where`` names the config key (``channels.slack.bot_token_file``); ``prefix`` is the
    shape a valid value starts with (``xoxb-``), checked without printing the value.
    """
    env = os.environ if env is None else env
    if path is not None:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"config: {where} {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"config: {where} {path} is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config: {where} {path}: cannot read it ({exc})") from None
        if not value:
            raise ConfigError(f"config: {where} {path} is empty")
        source = f"{where} {path}"
    else:
        value = env.get(env_name, "").strip()
        if not value:
            section, _, key = where.rpartition(".")
            raise ConfigError(
                f"config: {section} needs {what}: set {key} (mode 0600) or ${env_name}"
            )
        source = f"${env_name}"
    if prefix and not value.startswith(prefix):
        # never echo the value: say only what shape was expected
        raise ConfigError(f"config: {source} does not hold a {prefix}… token")
    return value
