"""``agentbridge doctor`` for Lark/Feishu: the table, the app id and secret (files with mode
0600, or the environment), which domain, and a tenant token fetched with them.

The token fetch (``auth/v3/tenant_access_token/internal``) proves the credentials and the
reach of the domain in one call without touching the long connection or any chat, so a
running bridge is not disturbed. The secret never appears in a line.
"""

from __future__ import annotations

import asyncio

from agentbridge.config import Config, ConfigError
from agentbridge.plugin.doctor import DoctorCheck

from agentbridge_lark.settings import (
    APP_ID_ENV,
    APP_SECRET_ENV,
    DOMAINS,
    LarkSettings,
    load_credentials,
    parse_settings,
)


def domain_name(settings: LarkSettings) -> str:
    """Feishu (China), Lark (international), or the URL given."""
    names = {url: name for name, url in DOMAINS.items()}
    found = names.get(settings.base_url)
    if found == "feishu":
        return f"Feishu ({settings.base_url})"
    if found == "lark":
        return f"Lark ({settings.base_url})"
    return settings.base_url


def _sources(settings: LarkSettings) -> str:
    app_id = "app_id" if settings.app_id else (
        f"{settings.app_id_file} (mode 0600)" if settings.app_id_file else f"${APP_ID_ENV}"
    )  # fmt: skip
    secret = f"{settings.app_secret_file} (mode 0600)" if settings.app_secret_file else (
        f"${APP_SECRET_ENV}"
    )  # fmt: skip
    return f"app id from {app_id}, secret from {secret}"


async def checks(config: Config, env: dict[str, str] | None = None) -> list[DoctorCheck]:
    """The lines for ``[channels.lark]`` (none when the channel is not configured)."""
    table = config.channels.get("lark")
    if table is None:
        return []
    try:
        settings = parse_settings(dict(table))
    except ConfigError as exc:
        return [DoctorCheck("lark config", False, str(exc).removeprefix("config: "))]
    where = domain_name(settings)
    if settings.allowed_users:
        detail = f"{len(settings.allowed_users)} allowed user(s); domain {where}"
        out = [DoctorCheck("lark config", True, detail)]
    else:
        out = [
            DoctorCheck(
                "lark config",
                False,
                "channels.lark.allowed_users is empty: nobody can reach the agents (add your "
                "open_id ou_…; the bridge log names refused senders' ids)",
            )
        ]
    try:
        app_id, secret = load_credentials(settings, env)
    except ConfigError as exc:
        return [*out, DoctorCheck("lark credentials", False, str(exc).removeprefix("config: "))]
    out.append(DoctorCheck("lark credentials", True, _sources(settings)))
    from agentbridge_lark.api import LarkApi, LarkApiError  # the SDK loads only when needed

    api = LarkApi(app_id, secret, settings.base_url, settings.request_timeout)
    try:
        await asyncio.to_thread(api.tenant_token)
    except LarkApiError as exc:
        why = f"Lark refused the app id/secret (code {exc.code}: {exc.msg[:120]})"
        return [*out, DoctorCheck("lark api", False, f"tenant token from {where}: {why}")]
    except Exception as exc:
        return [
            *out,
            DoctorCheck("lark api", False, f"cannot reach {where}: {type(exc).__name__}"),
        ]
    out.append(DoctorCheck("lark api", True, f"tenant token fetched from {where} for {app_id}"))
    return out
