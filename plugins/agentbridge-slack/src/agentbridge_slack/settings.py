"""The ``[channels.slack]`` table, validated strictly, and the two tokens, read safely.

Every error is one ``ConfigError`` line naming the key: a misspelt ``alowed_users`` silently
ignored would mean "nobody" (or worse, a silently dropped team restriction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentbridge.config import ConfigError
from agentbridge.plugin.secrets import read_secret

#: the public Web API, built from parts so the host name is in exactly one place
DEFAULT_BASE_URL = "https://" + "slack" + ".com/api/"
#: where ``url_private`` files live: the only host besides ``base_url``'s that gets the token
FILES_HOST = "files." + "slack" + ".com"
BOT_TOKEN_ENV = "AGENTBRIDGE_SLACK_BOT_TOKEN"
APP_TOKEN_ENV = "AGENTBRIDGE_SLACK_APP_TOKEN"
SIGNING_SECRET_ENV = "AGENTBRIDGE_SLACK_SIGNING_SECRET"
MODES = ("socket", "events")

_KEYS = {
    "bot_token_file",
    "app_token_file",
    "allowed_users",
    "allowed_teams",
    "allowed_channels",
    "base_url",
    "request_timeout",
    "catch_up",
    "reply_in_thread",
    "slash_command",
    "max_download_bytes",
    "max_upload_bytes",
    "mode",
    "signing_secret_file",
    "listen_host",
    "listen_port",
    "events_path",
}


@dataclass(frozen=True)
class SlackSettings:
    """One validated ``[channels.slack]`` table."""

    bot_token_file: Path | None = None
    app_token_file: Path | None = None
    #: Slack user ids (``U…``/``W…``) allowed to talk to the agents; empty = nobody
    allowed_users: frozenset[str] = frozenset()
    #: when set, only these workspaces (``T…``)
    allowed_teams: frozenset[str] = frozenset()
    #: when set, only these conversations (``C…``/``D…``/``G…``)
    allowed_channels: frozenset[str] = frozenset()
    base_url: str = DEFAULT_BASE_URL
    request_timeout: float = 20.0
    #: read ``conversations.history`` since the last seen ts on start and after a reconnect
    catch_up: bool = True
    #: a top-level @mention in a channel is answered in a thread under it
    reply_in_thread: bool = True
    #: the app's slash command; ``/agentbridge stop`` runs ``/stop``
    slash_command: str = "/agentbridge"
    #: inbound files larger than this are refused before the download (the core's
    #: ``[attachments] max_bytes`` applies too)
    max_download_bytes: int = 20 * 1024 * 1024
    #: outbound files larger than this fail permanently (Slack's own limit is 1 GB)
    max_upload_bytes: int = 100 * 1024 * 1024
    #: "socket" (Socket Mode, no public URL) or "events" (the Events API over HTTP)
    mode: str = "socket"
    signing_secret_file: Path | None = None
    #: where the Events API server listens (behind your TLS proxy); port 0 = any free port
    listen_host: str = "127.0.0.1"
    listen_port: int = 3000
    events_path: str = "/slack/events"

    @property
    def file_hosts(self) -> frozenset[str]:
        """Hosts a file download may send the bot token to."""
        return frozenset({FILES_HOST, urlsplit(self.base_url).netloc})


def _want(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"config: channels.slack.{key} must not be a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"config: channels.slack.{key} has the wrong type: {value!r}")
    return value


def _ids(table: dict[str, Any], key: str, prefixes: str) -> frozenset[str]:
    values = _want(table.get(key, []), list, key)
    out: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value or value[0] not in prefixes:
            raise ConfigError(
                f"config: channels.slack.{key} must list Slack ids starting with "
                f"{'/'.join(prefixes)}, not {value!r}"
            )
        out.add(value)
    return frozenset(out)


def parse_settings(table: dict[str, Any]) -> SlackSettings:
    """Validate a ``[channels.slack]`` table (unknown keys are errors)."""
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                f"config: unknown key channels.slack.{key!r} (allowed: {', '.join(sorted(_KEYS))})"
            )
    base_url = _want(table.get("base_url", DEFAULT_BASE_URL), str, "base_url")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"config: channels.slack.base_url must be an http(s) URL: {base_url}")
    timeout = float(_want(table.get("request_timeout", 20), (int, float), "request_timeout"))
    if timeout <= 0:
        raise ConfigError("config: channels.slack.request_timeout must be > 0")
    mode = _want(table.get("mode", "socket"), str, "mode")
    if mode not in MODES:
        raise ConfigError(f"config: channels.slack.mode must be one of {', '.join(MODES)}")
    port = _want(table.get("listen_port", 3000), int, "listen_port")
    if not 0 <= port < 65536:
        raise ConfigError("config: channels.slack.listen_port must be 0-65535")
    path = _want(table.get("events_path", "/slack/events"), str, "events_path")
    if not path.startswith("/"):
        raise ConfigError(f"config: channels.slack.events_path must start with /: {path!r}")
    files: dict[str, Path | None] = {}
    for key in ("bot_token_file", "app_token_file", "signing_secret_file"):
        raw = table.get(key)
        files[key] = None if raw is None else Path(_want(raw, str, key)).expanduser()
    slash = _want(table.get("slash_command", "/agentbridge"), str, "slash_command")
    if not slash.startswith("/") or len(slash) < 2 or " " in slash:
        raise ConfigError(f"config: channels.slack.slash_command must look like /name: {slash!r}")
    sizes = {}
    for key, default in (("max_download_bytes", 20 << 20), ("max_upload_bytes", 100 << 20)):
        sizes[key] = _want(table.get(key, default), int, key)
        if sizes[key] <= 0:
            raise ConfigError(f"config: channels.slack.{key} must be > 0")
    return SlackSettings(
        bot_token_file=files["bot_token_file"],
        app_token_file=files["app_token_file"],
        allowed_users=_ids(table, "allowed_users", "UW"),
        allowed_teams=_ids(table, "allowed_teams", "TE"),
        allowed_channels=_ids(table, "allowed_channels", "CDG"),
        base_url=base_url.rstrip("/") + "/",
        request_timeout=timeout,
        catch_up=_want(table.get("catch_up", True), bool, "catch_up"),
        reply_in_thread=_want(table.get("reply_in_thread", True), bool, "reply_in_thread"),
        slash_command=slash,
        max_download_bytes=sizes["max_download_bytes"],
        max_upload_bytes=sizes["max_upload_bytes"],
        mode=mode,
        signing_secret_file=files["signing_secret_file"],
        listen_host=_want(table.get("listen_host", "127.0.0.1"), str, "listen_host"),
        listen_port=port,
        events_path=path,
    )


def load_tokens(settings: SlackSettings, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(bot token ``xoxb-…``, app-level token ``xapp-…``, or in ``events`` mode the signing
    secret) or one clear ``ConfigError``."""
    bot = read_secret(
        settings.bot_token_file,
        where="channels.slack.bot_token_file",
        env_name=BOT_TOKEN_ENV,
        env=env,
        prefix="xoxb-",
        what="a bot token (xoxb-…)",
    )
    if settings.mode == "events":
        secret = read_secret(
            settings.signing_secret_file,
            where="channels.slack.signing_secret_file",
            env_name=SIGNING_SECRET_ENV,
            env=env,
            what="the app's signing secret (mode = events)",
        )
        return bot, secret
    app = read_secret(
        settings.app_token_file,
        where="channels.slack.app_token_file",
        env_name=APP_TOKEN_ENV,
        env=env,
        prefix="xapp-",
        what="an app-level token (xapp-…)",
    )
    return bot, app
