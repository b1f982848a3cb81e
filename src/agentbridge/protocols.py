"""Old import path of :mod:`agentbridge.plugin.protocols`, kept for old plugins."""

from agentbridge.plugin.protocols import *  # noqa: F403
