"""``agentbridge doctor`` for Telegram: the table, the token (file mode or env), ``getMe``.

``getMe`` proves the token and the reach of ``base_url`` in one call without touching
updates (a running bridge's long poll is not disturbed). Errors are redacted: the token is
part of every Bot API URL.
"""

from __future__ import annotations

from agentbridge.config import Config, ConfigError
from agentbridge.plugin.doctor import DoctorCheck

from agentbridge_telegram.api import BotApi, TelegramApiError, TelegramNetworkError
from agentbridge_telegram.settings import TOKEN_ENV, load_token, parse_settings


async def checks(config: Config, env: dict[str, str] | None = None) -> list[DoctorCheck]:
    """The lines for ``[channels.telegram]`` (none when the channel is not configured)."""
    table = config.channels.get("telegram")
    if table is None:
        return []
    try:
        settings = parse_settings(dict(table))
    except ConfigError as exc:
        return [DoctorCheck("telegram config", False, str(exc).removeprefix("config: "))]
    if settings.allowed_users:
        out = [
            DoctorCheck("telegram config", True, f"{len(settings.allowed_users)} allowed user(s)")
        ]
    else:
        out = [
            DoctorCheck(
                "telegram config",
                False,
                "channels.telegram.allowed_users is empty: nobody can reach the agents (add "
                "your numeric Telegram user id; the bridge log names refused senders' ids)",
            )
        ]
    try:
        token = load_token(settings, env)
    except ConfigError as exc:
        return [*out, DoctorCheck("telegram token", False, str(exc).removeprefix("config: "))]
    source = f"{settings.token_file} (mode 0600)" if settings.token_file else f"${TOKEN_ENV}"
    out.append(DoctorCheck("telegram token", True, f"from {source}"))
    api = BotApi(token, settings.base_url, settings.request_timeout)
    try:
        me = await api.call("getMe")
    except TelegramApiError as exc:
        why = "the bot token was rejected" if exc.status in (401, 404) else str(exc)
        return [*out, DoctorCheck("telegram api", False, f"getMe: {why}")]
    except TelegramNetworkError as exc:
        return [
            *out,
            DoctorCheck("telegram api", False, f"cannot reach {settings.base_url}: {exc}"),
        ]
    finally:
        await api.close()
    name = me.get("username") if isinstance(me, dict) else None
    out.append(DoctorCheck("telegram api", True, f"getMe: @{name}"))
    return out
