"""The plugin contract: every hook agentbridge calls. Documented hook by hook in docs/plugins.md.

Hooks only register objects, set policy or observe; pluggy never awaits, so async work lives
on the registered objects (``Channel.start/stop/deliver``), which the bridge calls directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from agentbridge.config import Config
    from agentbridge.plugin.doctor import DoctorCheck
    from agentbridge.plugin.protocols import Channel, ErrorClass, Receipt, RuntimeProfile

PROJECT = "agentbridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ----------------------------------------------------------------- registration


@hookspec
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Register channel objects (web console, Telegram, …) by calling ``register(channel)``.

    :param register: call once per channel object; names must be unique across plugins.
    :param config: the bridge's validated config; ``config.channels[NAME]`` is the channel's
        own table (absent when the user did not configure it).
    """


@hookspec
def register_runtimes(register: Callable[[RuntimeProfile], None]) -> None:
    """Register agent runtime profiles (``claude-code``, ``codex``, …) with ``register(profile)``.

    :param register: call once per profile; ``profile.name`` is what ``[agents.X] runtime``
        selects.
    """


# ----------------------------------------------------------------- policy


@hookspec(firstresult=True)
def classify_delivery_error(channel: str, error: BaseException) -> ErrorClass | None:
    """Say whether a delivery error is transient, permanent or unknown; the first non-None
    answer wins. Replies go out at most once: transient only if the platform provably did not
    act; unknown (never resent) if it may have.

    :param channel: the channel name the reply was for.
    :param error: what ``Channel.deliver`` raised.
    :return: ``ErrorClass.TRANSIENT`` / ``PERMANENT`` / ``UNKNOWN``, or None to defer to the
        channel's own ``classify_error`` and then the built-in rules.
    """


# ----------------------------------------------------------------- observation


@hookspec
def message_receipt(receipt: Receipt) -> None:
    """Observe every receipt (queued, injected, working, replied, failed, waiting).

    The bridge already calls the originating channel's ``receipt()``; this hook is for
    observers (metrics, logging, mirrors). Must not block.

    :param receipt: the receipt, with message id, channel, conversation and status.
    """


@hookspec
def host_woke(slept_seconds: float) -> None:
    """The host resumed from sleep; channels that hold connections should reconnect.

    Called once per wake, after the health probe and recovery scan. Must not block:
    schedule async work with ``asyncio.get_running_loop().create_task``.

    :param slept_seconds: how long the host slept, as measured by the wake detector.
    """


@hookspec
def doctor_checks(config: Config) -> list[DoctorCheck] | Awaitable[list[DoctorCheck]] | None:
    """Check this plugin's setup for ``agentbridge doctor``: config keys, secrets, the
    platform's API and settings. May be ``async def`` (the CLI awaits it, with a deadline).

    :param config: the bridge's validated config (``config.channels[NAME]`` is yours).
    :return: ``agentbridge.plugin.doctor.DoctorCheck(what, ok, detail)`` lines, ``[]`` when the
        plugin is not configured (None too); a failing line says exactly what is missing.
    """
