"""agentbridge-lark: a Lark/Feishu channel (long connection) for agentbridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentbridge_lark.settings import LarkSettings, load_credentials, parse_settings

if TYPE_CHECKING:
    from agentbridge_lark.channel import LarkChannel


def __getattr__(name: str) -> Any:
    """``LarkChannel`` loads the platform SDK: only when asked for (the entry point imports this
    package on every ``agentbridge`` start, configured or not)."""
    if name == "LarkChannel":
        from agentbridge_lark.channel import LarkChannel

        return LarkChannel
    raise AttributeError(name)


__all__ = ["LarkChannel", "LarkSettings", "load_credentials", "parse_settings"]
