"""The ``agentbridge`` command line, split by command group."""

from agentbridge.cli.app import main

__all__ = ["main"]
