"""``agentbridge doctor`` for plugins: each plugin's ``doctor_checks`` hook, called in isolation.

A check says what it looked at and, when it fails, exactly what is missing (a config key, a
token file's mode, an unreachable API, a platform setting such as Discord's Message Content
intent). Hooks are plain functions (pluggy never awaits); one that does network I/O may be an
``async def`` (or return an awaitable): the CLI, which has no event loop of its own, runs them
all in one, each under a deadline. A hook that raises or hangs becomes one failed line naming
the plugin; the other plugins' checks still run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from agentbridge.config import Config

log = logging.getLogger(__name__)

#: seconds one plugin's checks may take in all
DOCTOR_TIMEOUT = 30.0


@dataclass(frozen=True)
class DoctorCheck:
    """One line of ``agentbridge doctor``: ``ok`` or not, ``what`` was checked, the detail."""

    what: str  #: short, e.g. ``"discord api"``
    ok: bool
    detail: str  #: when not ok: what exactly is missing and how to fix it


def _lines(answer: Any) -> list[DoctorCheck]:
    """A hook's answer as a list (None or [] when it has nothing to say)."""
    return list(answer) if isinstance(answer, Sequence) else []


def _crashed(plugin: str, exc: BaseException) -> DoctorCheck:
    text = str(exc) or type(exc).__name__
    return DoctorCheck(f"plugin {plugin}", False, f"doctor check failed: {text}")


async def _settle(plugin: str, answer: Awaitable[Any], timeout: float) -> list[DoctorCheck]:
    try:
        return _lines(await asyncio.wait_for(answer, timeout))
    except TimeoutError:
        return [DoctorCheck(f"plugin {plugin}", False, f"doctor checks took over {timeout:g} s")]
    except Exception as exc:
        log.debug("doctor check of %s failed", plugin, exc_info=True)
        return [_crashed(plugin, exc)]


def run_checks(
    pm: pluggy.PluginManager, config: Config, timeout: float = DOCTOR_TIMEOUT
) -> list[DoctorCheck]:
    """Every plugin's checks, in plugin order (``PluginHost.pm``; call it where no event loop
    runs)."""
    slots: list[list[DoctorCheck] | tuple[str, Awaitable[Any]]] = []
    for impl in pm.hook.doctor_checks.get_hookimpls():  # registration order: as loaded
        try:
            answer = impl.function(config=config)
        except Exception as exc:
            slots.append([_crashed(impl.plugin_name, exc)])
            continue
        if inspect.isawaitable(answer):
            slots.append((impl.plugin_name, answer))
        else:
            slots.append(_lines(answer))
    pending = [s for s in slots if isinstance(s, tuple)]
    if pending:

        async def gather() -> list[list[DoctorCheck]]:
            return list(await asyncio.gather(*(_settle(n, a, timeout) for n, a in pending)))

        done = iter(asyncio.run(gather()))
        slots = [next(done) if isinstance(s, tuple) else s for s in slots]
    return [check for slot in slots if isinstance(slot, list) for check in slot]


__all__ = ["DOCTOR_TIMEOUT", "DoctorCheck", "run_checks"]
