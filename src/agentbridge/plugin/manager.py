"""Build the one plugin manager of a running bridge: defaults first, then entry points.

Each third-party plugin loads in isolation: one that fails to import, or that implements a
hook that does not exist (a misspelling), is reported and skipped; the rest load. The same
holds when its ``register_channels`` raises (a bug): its channels are skipped, the others
start. A ``ConfigError`` from it is the user's to fix, so it stops the bridge, as a duplicate
channel name does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from agentbridge.plugin import hookspecs

if TYPE_CHECKING:
    from agentbridge.config import Config
    from agentbridge.plugin.protocols import Channel, RuntimeProfile

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "agentbridge"

#: built-in plugins, registered exactly like third-party ones
DEFAULT_PLUGINS: tuple[str, ...] = (
    "agentbridge.channels.local",
    "agentbridge.runtimes.plugin",
    "agentbridge.channels.web.plugin",
    "agentbridge.channels.http_api",
    "agentbridge.channels.scheduler",
)


class DuplicateChannel(ValueError):
    """Two plugins registered the same channel name: the bridge cannot pick one."""


@dataclass
class PluginReport:
    """One plugin as ``agentbridge plugins`` shows it."""

    name: str
    source: str  # "default" or the distribution name
    loaded: bool
    error: str = ""
    hooks: list[str] = field(default_factory=list)


@dataclass
class PluginHost:
    """The plugin manager plus what loading it found out."""

    pm: pluggy.PluginManager
    reports: list[PluginReport]

    def runtimes(self) -> dict[str, RuntimeProfile]:
        """All registered runtime profiles by name."""
        found: dict[str, RuntimeProfile] = {}

        def register(profile: RuntimeProfile) -> None:
            if profile.name in found:
                raise ValueError(f"runtime {profile.name!r} registered twice")
            found[profile.name] = profile

        self.pm.hook.register_runtimes(register=register)
        return found

    def channels(self, config: Config) -> dict[str, Channel]:
        """All registered channel objects by name, each plugin's hook called in isolation.

        A ``ConfigError`` or ``DuplicateChannel`` propagates (the bridge refuses to start with
        its line); any other exception is that plugin's bug: logged (traceback in the log
        file), the channels it registered dropped, the other plugins' kept.
        """
        from agentbridge.config import ConfigError

        found: dict[str, Channel] = {}
        hook = self.pm.hook.register_channels
        for impl in reversed(hook.get_hookimpls()):  # pluggy's own call order
            mine: dict[str, Channel] = {}

            def register(
                channel: Channel, mine: dict[str, Channel] = mine, by: str = impl.plugin_name
            ) -> None:
                if channel.name in found or channel.name in mine:
                    raise DuplicateChannel(
                        f"channel {channel.name!r} registered twice (plugin {by!r} and"
                        " another): uninstall one of them"
                    )
                mine[channel.name] = channel

            given = {"register": register, "config": config}
            try:
                impl.function(**{arg: given[arg] for arg in impl.argnames})
            except (ConfigError, DuplicateChannel):
                raise
            except Exception as exc:
                log.error(
                    "plugin %s: register_channels failed, its channels are skipped: %s: %s",
                    impl.plugin_name,
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
                continue
            found.update(mine)
        return found


def _hooks_of(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register and validate at once: unknown hook names are a misspelling, an error."""
    pm.register(plugin, name=name)
    try:
        for hook_name in dir(pm.hook):
            hook = getattr(pm.hook, hook_name)
            if hook_name.startswith("_") or not isinstance(hook, pluggy.HookCaller):
                continue
            if not hook.has_spec() and any(impl.plugin is plugin for impl in hook.get_hookimpls()):
                raise pluggy.PluginValidationError(
                    plugin, f"unknown hook {hook_name!r} in plugin {name!r} (misspelt?)"
                )
    except pluggy.PluginValidationError:
        pm.unregister(plugin)
        raise


def build_plugin_manager(
    *, load_entry_points: bool = True, extra: tuple[object, ...] = ()
) -> PluginHost:
    """A fresh plugin manager (never a global): defaults, then ``extra``, then entry points.

    ``AGENTBRIDGE_LOAD_PLUGINS`` (comma-separated entry point names) limits which third-party
    plugins load; an empty value loads none.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    reports: list[PluginReport] = []

    for module_name in DEFAULT_PLUGINS:
        try:
            module: ModuleType = importlib.import_module(module_name)
            _register(pm, module, module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # a default module this build does not ship
            reports.append(PluginReport(module_name, "default", False, f"{exc}"))
            log.error("default plugin %s failed to load: %s", module_name, exc)
            log.debug("default plugin load failure", exc_info=True)
            continue
        except Exception as exc:
            reports.append(PluginReport(module_name, "default", False, f"{exc}"))
            log.error("default plugin %s failed to load: %s", module_name, exc)
            log.debug("default plugin load failure", exc_info=True)
            continue
        reports.append(PluginReport(module_name, "default", True, hooks=_hooks_of(pm, module)))

    for index, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", f"extra-{index}")
        _register(pm, plugin, name)
        reports.append(PluginReport(name, "extra", True, hooks=_hooks_of(pm, plugin)))

    if load_entry_points:
        allow = os.environ.get("AGENTBRIDGE_LOAD_PLUGINS")
        allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            source = ep.dist.name if ep.dist else ep.value
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                _register(pm, plugin, ep.name)
            except Exception as exc:  # isolate: one broken plugin never stops the others
                log.warning("plugin %s (%s) failed to load: %s", ep.name, source, exc)
                log.debug("plugin %s load failure", ep.name, exc_info=True)
                reports.append(PluginReport(ep.name, source, False, f"{type(exc).__name__}: {exc}"))
                continue
            reports.append(PluginReport(ep.name, source, True, hooks=_hooks_of(pm, plugin)))

    return PluginHost(pm=pm, reports=reports)
