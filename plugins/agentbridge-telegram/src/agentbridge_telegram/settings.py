"""The ``[channels.telegram]`` table, validated strictly, and the bot token, read safely.

Every error is one ``ConfigError`` line naming the key, like the bridge's own config: a
misspelt key silently ignored would be a lost setting (``alowed_users`` would mean "nobody").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.plugin.secrets import read_secret

#: the public Bot API, built from parts so the host name is in exactly one place
DEFAULT_BASE_URL = "https://" + "api." + "telegram" + ".org"
TOKEN_ENV = "AGENTBRIDGE_TELEGRAM_TOKEN"
WEBHOOK_SECRET_ENV = "AGENTBRIDGE_TELEGRAM_WEBHOOK_SECRET"
MODES = ("polling", "webhook")
PARSE_MODES = ("HTML", "none")

_KEYS = {
    "token_file",
    "allowed_users",
    "base_url",
    "poll_timeout",
    "mode",
    "parse_mode",
    "webhook_host",
    "webhook_port",
    "webhook_path",
    "webhook_url",
    "webhook_secret",
    "unauthorised_reply",
    "request_timeout",
    "max_file_bytes",
}


@dataclass(frozen=True)
class TelegramSettings:
    """One validated ``[channels.telegram]`` table."""

    token_file: Path | None = None
    #: Telegram user ids allowed to talk to the agents; empty = nobody (deny by default)
    allowed_users: frozenset[int] = frozenset()
    base_url: str = DEFAULT_BASE_URL
    #: seconds a getUpdates long poll waits on Telegram's side
    poll_timeout: float = 30.0
    mode: str = "polling"
    #: "HTML" (replies formatted, plain-text fallback) or "none" (always plain)
    parse_mode: str = "HTML"
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_path: str = "/telegram/webhook"
    #: public HTTPS URL Telegram posts to; when set, ``start`` calls setWebhook with it
    webhook_url: str | None = None
    webhook_secret: str | None = None
    #: answer refused senders once with a short "not authorised" line
    unauthorised_reply: bool = True
    #: seconds for one non-polling request (sendMessage…; an upload adds time for its size)
    request_timeout: float = 20.0
    #: largest file sent back (the Bot API's 50 MB; a local Bot API server takes 2000 MB)
    max_file_bytes: int = 50 * 1024 * 1024


def _want(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"config: channels.telegram.{key} must not be a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"config: channels.telegram.{key} has the wrong type: {value!r}")
    return value


def parse_settings(table: dict[str, Any]) -> TelegramSettings:
    """Validate a ``[channels.telegram]`` table (unknown keys are errors)."""
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                f"config: unknown key channels.telegram.{key!r} "
                f"(allowed: {', '.join(sorted(_KEYS))})"
            )
    users_raw = _want(table.get("allowed_users", []), list, "allowed_users")
    users: set[int] = set()
    for user in users_raw:
        # ids are numbers; accept "12345" too, since TOML users often quote them
        if isinstance(user, str) and user.strip().lstrip("-").isdigit():
            user = int(user)
        if isinstance(user, bool) or not isinstance(user, int):
            raise ConfigError(
                f"config: channels.telegram.allowed_users must list numeric user ids, not {user!r}"
            )
        users.add(user)
    mode = _want(table.get("mode", "polling"), str, "mode")
    if mode not in MODES:
        raise ConfigError(f"config: channels.telegram.mode must be one of {MODES}, not {mode!r}")
    parse_mode = _want(table.get("parse_mode", "HTML"), str, "parse_mode")
    if parse_mode.lower() in ("", "none", "plain"):
        parse_mode = "none"
    elif parse_mode.upper() == "HTML":
        parse_mode = "HTML"
    else:
        raise ConfigError(
            f"config: channels.telegram.parse_mode must be 'HTML' or 'none', not {parse_mode!r}"
        )
    poll_timeout = float(_want(table.get("poll_timeout", 30), (int, float), "poll_timeout"))
    if not 1 <= poll_timeout <= 50:  # 0 would be short polling: a busy loop
        raise ConfigError("config: channels.telegram.poll_timeout must be 1..50 seconds")
    request_timeout = float(
        _want(table.get("request_timeout", 20), (int, float), "request_timeout")
    )
    if request_timeout <= 0:
        raise ConfigError("config: channels.telegram.request_timeout must be > 0")
    max_file = _want(table.get("max_file_bytes", 50 * 1024 * 1024), int, "max_file_bytes")
    if max_file < 0:
        raise ConfigError("config: channels.telegram.max_file_bytes must be >= 0 (0: no files)")
    port = _want(table.get("webhook_port", 8443), int, "webhook_port")
    if not 0 <= port <= 65535:
        raise ConfigError(f"config: channels.telegram.webhook_port must be 0..65535, not {port}")
    token_file = table.get("token_file")
    base_url = _want(table.get("base_url", DEFAULT_BASE_URL), str, "base_url").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"config: channels.telegram.base_url must be an http(s) URL: {base_url}")
    path = _want(table.get("webhook_path", "/telegram/webhook"), str, "webhook_path")
    webhook_url = table.get("webhook_url")
    secret = table.get("webhook_secret")
    settings = TelegramSettings(
        token_file=Path(_want(token_file, str, "token_file")).expanduser() if token_file else None,
        allowed_users=frozenset(users),
        base_url=base_url,
        poll_timeout=poll_timeout,
        mode=mode,
        parse_mode=parse_mode,
        webhook_host=_want(table.get("webhook_host", "127.0.0.1"), str, "webhook_host"),
        webhook_port=port,
        webhook_path=path if path.startswith("/") else "/" + path,
        webhook_url=None if webhook_url is None else _want(webhook_url, str, "webhook_url"),
        webhook_secret=None if secret is None else _want(secret, str, "webhook_secret"),
        unauthorised_reply=_want(table.get("unauthorised_reply", True), bool, "unauthorised_reply"),
        request_timeout=request_timeout,
        max_file_bytes=max_file,
    )
    return settings


def load_token(settings: TelegramSettings, env: dict[str, str] | None = None) -> str:
    """The bot token: from ``token_file`` (mode 0600) or ``${TOKEN_ENV}``."""
    return read_secret(
        settings.token_file, where="channels.telegram.token_file", env_name=TOKEN_ENV, env=env
    )


def webhook_secret(settings: TelegramSettings, env: dict[str, str] | None = None) -> str:
    """The secret Telegram sends in ``X-Telegram-Bot-Api-Secret-Token`` (required for webhooks)."""
    env = dict(os.environ) if env is None else env
    secret = settings.webhook_secret or env.get(WEBHOOK_SECRET_ENV, "")
    if not secret:
        raise ConfigError(
            "config: channels.telegram.mode = 'webhook' needs webhook_secret "
            f"(or ${WEBHOOK_SECRET_ENV})"
        )
    return secret
