"""``agentbridge doctor`` for Discord: the table, the token, the API, the portal's settings.

Each line says exactly what is missing. The Message Content intent is read from the
application's flags (``GET /oauth2/applications/@me``: GATEWAY_MESSAGE_CONTENT or its
_LIMITED twin is set when the portal switch is on), so a bridge that would be closed with
4014 at its first IDENTIFY is caught here. An Interactions Endpoint URL on the application
sends clicks and slash commands to that URL instead of the gateway: also a failing line.
Plain aiohttp, not discord.py's client: nothing here logs in to the gateway.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from agentbridge.config import Config, ConfigError
from agentbridge.plugin.doctor import DoctorCheck

from agentbridge_discord.settings import TOKEN_ENV, DiscordSettings, load_token, parse_settings

API_VERSION = 10
DISCORD_API = "https://discord.com"
#: application flags: the Message Content intent is enabled (verified / unverified apps)
GATEWAY_MESSAGE_CONTENT = 1 << 19
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 18
INTENT_OFF = (
    "Message Content intent is off for this bot: Developer Portal → your application → Bot → "
    "Privileged Gateway Intents → Message Content Intent (or set "
    "channels.discord.message_content_intent = false: then only DMs and @mentions carry text)"
)
ENDPOINT_SET = (
    "the application has an Interactions Endpoint URL (%s): Discord sends button clicks and "
    "slash commands there, not to the bot; clear it under General Information"
)


async def checks(config: Config, env: dict[str, str] | None = None) -> list[DoctorCheck]:
    """The lines for ``[channels.discord]`` (none when the channel is not configured)."""
    table = config.channels.get("discord")
    if table is None:
        return []
    try:
        settings = parse_settings(dict(table))
    except ConfigError as exc:
        return [DoctorCheck("discord config", False, str(exc).removeprefix("config: "))]
    out = [_users(settings)]
    try:
        token = load_token(settings, env)
    except ConfigError as exc:
        return [*out, DoctorCheck("discord token", False, str(exc).removeprefix("config: "))]
    source = f"{settings.token_file} (mode 0600)" if settings.token_file else f"${TOKEN_ENV}"
    out.append(DoctorCheck("discord token", True, f"from {source}"))
    return out + await _remote(settings, token)


def _users(settings: DiscordSettings) -> DoctorCheck:
    if not settings.allowed_users:
        return DoctorCheck(
            "discord config",
            False,
            "channels.discord.allowed_users is empty: nobody can reach the agents (add your "
            "Discord user id: Settings → Advanced → Developer Mode, right-click your name)",
        )
    return DoctorCheck("discord config", True, f"{len(settings.allowed_users)} allowed user(s)")


async def _remote(settings: DiscordSettings, token: str) -> list[DoctorCheck]:
    base = f"{settings.api_base_url or DISCORD_API}/api/v{API_VERSION}"
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout)
    headers = {"Authorization": f"Bot {token}", "User-Agent": "agentbridge-doctor"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        try:
            me = await _get(session, f"{base}/users/@me")
            app = await _get(session, f"{base}/oauth2/applications/@me")
        except _Refused as exc:
            return [DoctorCheck("discord api", False, str(exc))]
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            return [DoctorCheck("discord api", False, f"cannot reach {base}: {why}")]
    out = [DoctorCheck("discord api", True, f"logged in as {me.get('username')} ({me.get('id')})")]
    flags = int(app.get("flags") or 0)
    if not settings.message_content_intent:
        out.append(DoctorCheck("discord intent", True, "Message Content not requested"))
    elif flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED):
        out.append(DoctorCheck("discord intent", True, "Message Content intent enabled"))
    else:
        out.append(DoctorCheck("discord intent", False, INTENT_OFF))
    endpoint = app.get("interactions_endpoint_url")
    if endpoint:
        out.append(DoctorCheck("discord buttons", False, ENDPOINT_SET % endpoint))
    return out


class _Refused(Exception):
    """Discord answered, and said no (the text is the line to print)."""


async def _get(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        if response.status == 401:
            raise _Refused("Discord rejected the bot token (401): reset it under Bot → Token")
        if response.status >= 400:
            raise _Refused(f"GET {url.rsplit('/api/', 1)[-1]} answered HTTP {response.status}")
        body = await response.json(content_type=None)
    if not isinstance(body, dict):
        raise _Refused(f"GET {url}: not a JSON object")
    return body
