"""Default plugin registering the built-in runtime profiles."""

from __future__ import annotations

from collections.abc import Callable

from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import RuntimeProfile


@hookimpl
def register_runtimes(register: Callable[[RuntimeProfile], None]) -> None:
    """claude-code, codex, demo (the fake agent) and generic."""
    from agentbridge.runtimes.claude.profile import ClaudeCodeProfile
    from agentbridge.runtimes.codex.profile import CodexProfile
    from agentbridge.runtimes.demo import DemoProfile
    from agentbridge.runtimes.generic import GenericProfile

    for profile in (ClaudeCodeProfile(), CodexProfile(), DemoProfile(), GenericProfile()):
        register(profile)
