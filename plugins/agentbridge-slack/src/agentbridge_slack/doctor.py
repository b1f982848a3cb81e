"""``agentbridge doctor`` for Slack: the table, both tokens, ``auth.test``, the granted scopes.

Each line says exactly what is missing. The scopes are read from the ``x-oauth-scopes``
header Slack's Web API puts on its answer to a bot-token call (a comma-separated list), so a
scope left out when the app was installed is named here, not found later as a
``missing_scope`` on the first file or reaction. Plain aiohttp, not the SDK's client: nothing
here opens a Socket Mode connection.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from agentbridge.config import Config, ConfigError
from agentbridge.plugin.doctor import DoctorCheck
from agentbridge.plugin.secrets import read_secret

from agentbridge_slack.settings import (
    APP_TOKEN_ENV,
    BOT_TOKEN_ENV,
    SIGNING_SECRET_ENV,
    SlackSettings,
    parse_settings,
)

__all__ = ["SCOPES", "checks"]

#: every bot token scope the channel uses, and what for (the README's list)
SCOPES: dict[str, str] = {
    "chat:write": "replies",
    "app_mentions:read": "@mentions",
    "im:history": "DMs",
    "channels:history": "public channel threads",
    "groups:history": "private channel threads",
    "mpim:history": "group DMs",
    "reactions:write": "receipts",
    "channels:read": "catch-up",
    "groups:read": "catch-up",
    "im:read": "catch-up",
    "mpim:read": "catch-up",
    "files:read": "files people send",
    "files:write": "files the agent sends",
    "commands": "slash commands",
}
REINSTALL = "add them under OAuth & Permissions → Bot Token Scopes, then reinstall the app"


async def checks(config: Config, env: dict[str, str] | None = None) -> list[DoctorCheck]:
    """The lines for ``[channels.slack]`` (none when the channel is not configured)."""
    table = config.channels.get("slack")
    if table is None:
        return []
    try:
        settings = parse_settings(dict(table))
    except ConfigError as exc:
        return [DoctorCheck("slack config", False, str(exc).removeprefix("config: "))]
    out = [_users(settings), *_second_secret(settings, env)]
    try:
        bot = read_secret(
            settings.bot_token_file,
            where="channels.slack.bot_token_file",
            env_name=BOT_TOKEN_ENV,
            env=env,
            prefix="xoxb-",
            what="a bot token (xoxb-…)",
        )
    except ConfigError as exc:
        return [*out, DoctorCheck("slack bot token", False, str(exc).removeprefix("config: "))]
    out.append(
        DoctorCheck("slack bot token", True, _source(settings.bot_token_file, BOT_TOKEN_ENV))
    )
    return out + await _remote(settings, bot)


def _source(path: object, env_name: str) -> str:
    return f"from {path} (mode 0600)" if path is not None else f"from ${env_name}"


def _users(settings: SlackSettings) -> DoctorCheck:
    if not settings.allowed_users:
        return DoctorCheck(
            "slack config",
            False,
            "channels.slack.allowed_users is empty: nobody can reach the agents (add your "
            "member id: your profile → ⋮ → Copy member ID)",
        )
    return DoctorCheck("slack config", True, f"{len(settings.allowed_users)} allowed user(s)")


def _second_secret(settings: SlackSettings, env: dict[str, str] | None) -> list[DoctorCheck]:
    """Socket Mode needs the app-level token; ``mode = "events"`` the signing secret."""
    if settings.mode == "events":
        what, path, env_name = (
            "slack signing secret",
            settings.signing_secret_file,
            SIGNING_SECRET_ENV,
        )
        where, prefix, shape = "channels.slack.signing_secret_file", "", "the app's signing secret"
    else:
        what, path, env_name = "slack app token", settings.app_token_file, APP_TOKEN_ENV
        where, prefix, shape = (
            "channels.slack.app_token_file",
            "xapp-",
            "an app-level token (xapp-…)",
        )
    try:
        read_secret(path, where=where, env_name=env_name, env=env, prefix=prefix, what=shape)
    except ConfigError as exc:
        return [DoctorCheck(what, False, str(exc).removeprefix("config: "))]
    return [DoctorCheck(what, True, _source(path, env_name))]


async def _remote(settings: SlackSettings, token: str) -> list[DoctorCheck]:
    url = f"{settings.base_url}auth.test"
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "agentbridge-doctor"}
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
            session.post(url) as response,
        ):
            body: Any = await response.json(content_type=None)
            granted = response.headers.get("x-oauth-scopes")
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        why = str(exc) or type(exc).__name__
        return [DoctorCheck("slack api", False, f"cannot reach {settings.base_url}: {why}")]
    if not isinstance(body, dict) or not body.get("ok"):
        error = body.get("error") if isinstance(body, dict) else f"HTTP {status}"
        if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
            why = f"Slack rejected the bot token ({error}): copy it again from OAuth & Permissions"
        else:
            why = f"auth.test answered {error}"
        return [DoctorCheck("slack api", False, why)]
    who = f"logged in as {body.get('user')} ({body.get('user_id')}) in team {body.get('team_id')}"
    return [DoctorCheck("slack api", True, who), _scopes(granted)]


def _scopes(granted: str | None) -> DoctorCheck:
    if granted is None:
        return DoctorCheck(
            "slack scopes", False, "Slack did not say the token's scopes (no x-oauth-scopes)"
        )
    have = {s.strip() for s in granted.split(",") if s.strip()}
    missing = [f"{scope} ({why})" for scope, why in SCOPES.items() if scope not in have]
    if missing:
        return DoctorCheck("slack scopes", False, f"missing {', '.join(missing)}: {REINSTALL}")
    return DoctorCheck("slack scopes", True, f"all {len(SCOPES)} bot token scopes granted")
