"""The ``[channels.discord]`` table, validated strictly, and the bot token, read safely.

Every error is one ``ConfigError`` line naming the key, like the bridge's own config: a
misspelt key silently ignored would be a lost setting (``alowed_users`` would mean "nobody").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.plugin.secrets import read_secret

TOKEN_ENV = "AGENTBRIDGE_DISCORD_TOKEN"

_KEYS = {
    "token_file",
    "allowed_users",
    "allowed_guilds",
    "allowed_channels",
    "allow_dms",
    "message_content_intent",
    "unauthorised_reply",
    "request_timeout",
    "api_base_url",
    "gateway_url",
    "slash_commands",
    "max_attachment_bytes",
    "max_upload_bytes",
}
#: Discord's upload limit for bots outside boosted servers (discord.py's own constant)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class DiscordSettings:
    """One validated ``[channels.discord]`` table."""

    token_file: Path | None = None
    #: Discord user ids allowed to talk to the agents; empty = nobody (deny by default)
    allowed_users: frozenset[int] = frozenset()
    #: when set, guild messages count only in these guilds (DMs are governed by ``allow_dms``)
    allowed_guilds: frozenset[int] = frozenset()
    #: when set, guild messages count only in these channels or threads
    allowed_channels: frozenset[int] = frozenset()
    allow_dms: bool = True
    #: ask for the privileged Message Content intent (see the README: without it Discord
    #: still sends content for DMs and for messages that @mention the bot)
    message_content_intent: bool = True
    #: answer refused senders once with a short "not authorised" line
    unauthorised_reply: bool = False
    #: seconds one REST call may take before its outcome counts as unknown
    request_timeout: float = 20.0
    #: e.g. ``http://127.0.0.1:8080`` (a test server or a proxy); None = Discord itself
    api_base_url: str | None = None
    #: the gateway WebSocket URL used with ``api_base_url`` (``ws://…``)
    gateway_url: str | None = None
    #: register /stop, /status, … as Discord slash commands at start
    slash_commands: bool = True
    #: an inbound attachment larger than this is refused before it is downloaded
    max_attachment_bytes: int = 25 * 1024 * 1024
    #: an agent's file larger than this is a permanent error before anything is sent
    max_upload_bytes: int = DEFAULT_UPLOAD_LIMIT


def _want(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"config: channels.discord.{key} must not be a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"config: channels.discord.{key} has the wrong type: {value!r}")
    return value


def _ids(table: dict[str, Any], key: str) -> frozenset[int]:
    """Snowflakes as ints; TOML users often quote them (they exceed some tools' int range)."""
    raw = _want(table.get(key, []), list, key)
    ids: set[int] = set()
    for value in raw:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(
                f"config: channels.discord.{key} must list numeric ids, not {value!r}"
            )
        ids.add(value)
    return frozenset(ids)


def _url(table: dict[str, Any], key: str, schemes: tuple[str, ...]) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    url = str(_want(value, str, key)).rstrip("/")
    if not url.startswith(schemes):
        raise ConfigError(f"config: channels.discord.{key} must start with {' or '.join(schemes)}")
    return url


def parse_settings(table: dict[str, Any]) -> DiscordSettings:
    """Validate a ``[channels.discord]`` table (unknown keys are errors)."""
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                f"config: unknown key channels.discord.{key!r} "
                f"(allowed: {', '.join(sorted(_KEYS))})"
            )
    timeout = float(_want(table.get("request_timeout", 20), (int, float), "request_timeout"))
    if timeout <= 0:
        raise ConfigError("config: channels.discord.request_timeout must be > 0")
    api = _url(table, "api_base_url", ("http://", "https://"))
    gateway = _url(table, "gateway_url", ("ws://", "wss://"))
    if (api is None) != (gateway is None):
        raise ConfigError("config: channels.discord.api_base_url and gateway_url go together")
    token_file = table.get("token_file")
    sizes: dict[str, int] = {
        "max_attachment_bytes": DiscordSettings.max_attachment_bytes,
        "max_upload_bytes": DiscordSettings.max_upload_bytes,
    }
    for key in sizes:
        if key in table:
            sizes[key] = int(_want(table[key], int, key))
            if sizes[key] <= 0:
                raise ConfigError(f"config: channels.discord.{key} must be > 0")
    return DiscordSettings(
        token_file=Path(_want(token_file, str, "token_file")).expanduser() if token_file else None,
        allowed_users=_ids(table, "allowed_users"),
        allowed_guilds=_ids(table, "allowed_guilds"),
        allowed_channels=_ids(table, "allowed_channels"),
        allow_dms=_want(table.get("allow_dms", True), bool, "allow_dms"),
        message_content_intent=_want(
            table.get("message_content_intent", True), bool, "message_content_intent"
        ),
        unauthorised_reply=_want(
            table.get("unauthorised_reply", False), bool, "unauthorised_reply"
        ),
        request_timeout=timeout,
        api_base_url=api,
        gateway_url=gateway,
        slash_commands=_want(table.get("slash_commands", True), bool, "slash_commands"),
        max_attachment_bytes=sizes["max_attachment_bytes"],
        max_upload_bytes=sizes["max_upload_bytes"],
    )


def load_token(settings: DiscordSettings, env: dict[str, str] | None = None) -> str:
    """The bot token: from ``token_file`` (mode 0600) or ``${TOKEN_ENV}``."""
    return read_secret(
        settings.token_file, where="channels.discord.token_file", env_name=TOKEN_ENV, env=env
    )
