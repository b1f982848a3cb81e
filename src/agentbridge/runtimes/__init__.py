"""Built-in runtime profiles: how each kind of agent CLI is launched, injected into, read back."""

from __future__ import annotations

from agentbridge.runtimes.claude.profile import ClaudeCodeProfile
from agentbridge.runtimes.codex.profile import CodexProfile
from agentbridge.runtimes.demo import DemoProfile
from agentbridge.runtimes.generic import GenericProfile

__all__ = ["ClaudeCodeProfile", "CodexProfile", "DemoProfile", "GenericProfile"]
