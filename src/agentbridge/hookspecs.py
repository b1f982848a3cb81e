"""Old import path of :mod:`agentbridge.plugin.hookspecs`, kept for old plugins."""

from agentbridge.plugin.hookspecs import *  # noqa: F403
