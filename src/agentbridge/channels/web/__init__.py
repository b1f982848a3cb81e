"""The built-in web console: chat with an agent, live receipts, and a dashboard.

``WebChannel`` is the channel; ``plugin`` registers it when ``[console] enabled`` (the default).
"""

from __future__ import annotations

from agentbridge.channels.web.channel import ConsoleStartError, WebChannel

__all__ = ["ConsoleStartError", "WebChannel"]
