"""The ``[channels.lark]`` table, validated strictly, and the app credentials, read safely.

Every error is one ``ConfigError`` line naming the key: a misspelt ``alowed_users`` silently
ignored would mean "nobody" (or worse, a silently dropped tenant restriction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.plugin.secrets import read_secret

#: the two public OpenAPI origins, built from parts so each host name is in one place
DOMAINS = {
    "feishu": "https://open." + "feishu" + ".cn",
    "lark": "https://open." + "larksuite" + ".com",
}
APP_ID_ENV = "AGENTBRIDGE_LARK_APP_ID"
APP_SECRET_ENV = "AGENTBRIDGE_LARK_APP_SECRET"

_KEYS = {
    "app_id",
    "app_id_file",
    "app_secret_file",
    "domain",
    "allowed_users",
    "allowed_tenants",
    "allowed_chats",
    "allow_dms",
    "reply_in_thread",
    "catch_up",
    "request_timeout",
}


@dataclass(frozen=True)
class LarkSettings:
    """One validated ``[channels.lark]`` table."""

    app_id: str | None = None
    app_id_file: Path | None = None
    app_secret_file: Path | None = None
    #: the OpenAPI origin: Feishu (China), Lark (international) or a test server's URL
    base_url: str = DOMAINS["feishu"]
    #: open_ids (``ou_…``) or user_ids allowed to talk to the agents; empty = nobody
    allowed_users: frozenset[str] = frozenset()
    #: when set, only senders of these tenants (``tenant_key``)
    allowed_tenants: frozenset[str] = frozenset()
    #: when set, group messages count only in these chats (``oc_…``); DMs: ``allow_dms``
    allowed_chats: frozenset[str] = frozenset()
    allow_dms: bool = True
    #: a top-level @mention in a group is answered in a thread under it
    reply_in_thread: bool = True
    #: read the chats' message lists since the last seen message on start and reconnect
    catch_up: bool = True
    #: seconds one OpenAPI call may take before its outcome counts as unknown
    request_timeout: float = 20.0


def _want(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"config: channels.lark.{key} must not be a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"config: channels.lark.{key} has the wrong type: {value!r}")
    return value


def _ids(table: dict[str, Any], key: str, prefix: str = "") -> frozenset[str]:
    values = _want(table.get(key, []), list, key)
    out: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value.strip() or not value.startswith(prefix):
            shape = f"ids starting with {prefix}" if prefix else "non-empty string ids"
            raise ConfigError(f"config: channels.lark.{key} must list {shape}, not {value!r}")
        out.add(value.strip())
    return frozenset(out)


def _base_url(value: Any) -> str:
    domain = str(_want(value, str, "domain")).strip()
    if domain in DOMAINS:
        return DOMAINS[domain]
    if domain.startswith(("http://", "https://")):
        return domain.rstrip("/")
    raise ConfigError(
        f'config: channels.lark.domain must be "feishu", "lark" or an http(s) URL, not {domain!r}'
    )


def _path(table: dict[str, Any], key: str) -> Path | None:
    raw = table.get(key)
    return None if raw is None else Path(_want(raw, str, key)).expanduser()


def parse_settings(table: dict[str, Any]) -> LarkSettings:
    """Validate a ``[channels.lark]`` table (unknown keys are errors)."""
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                f"config: unknown key channels.lark.{key!r} (allowed: {', '.join(sorted(_KEYS))})"
            )
    timeout = float(_want(table.get("request_timeout", 20), (int, float), "request_timeout"))
    if timeout <= 0:
        raise ConfigError("config: channels.lark.request_timeout must be > 0")
    app_id = table.get("app_id")
    if app_id is not None and not str(_want(app_id, str, "app_id")).strip():
        raise ConfigError("config: channels.lark.app_id is empty")
    return LarkSettings(
        app_id=None if app_id is None else str(app_id).strip(),
        app_id_file=_path(table, "app_id_file"),
        app_secret_file=_path(table, "app_secret_file"),
        base_url=_base_url(table.get("domain", "feishu")),
        allowed_users=_ids(table, "allowed_users"),
        allowed_tenants=_ids(table, "allowed_tenants"),
        allowed_chats=_ids(table, "allowed_chats", "oc_"),
        allow_dms=_want(table.get("allow_dms", True), bool, "allow_dms"),
        reply_in_thread=_want(table.get("reply_in_thread", True), bool, "reply_in_thread"),
        catch_up=_want(table.get("catch_up", True), bool, "catch_up"),
        request_timeout=timeout,
    )


def load_credentials(settings: LarkSettings, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(app id ``cli_…``, app secret) or one clear ``ConfigError``; never logged."""
    app_id = settings.app_id or read_secret(
        settings.app_id_file,
        where="channels.lark.app_id_file",
        env_name=APP_ID_ENV,
        env=env,
        what="an app id (cli_…; or set app_id)",
    )
    secret = read_secret(
        settings.app_secret_file,
        where="channels.lark.app_secret_file",
        env_name=APP_SECRET_ENV,
        env=env,
        what="an app secret",
    )
    return app_id, secret
