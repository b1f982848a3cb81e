"""The fake agent: a real terminal program that behaves like Claude Code as the bridge sees it.

Used by tests and by the ``demo`` runtime profile so the bridge runs with no API key.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from agentbridge.fakeagent.app import FakeAgent
from agentbridge.fakeagent.options import Options


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse the command line into :class:`Options`."""
    parser = argparse.ArgumentParser(prog="python -m agentbridge.fakeagent")
    parser.add_argument("--session-id", default=None, help="session uuid (default: random)")
    parser.add_argument("--byte-log", type=Path, default=None, help="append raw stdin bytes here")
    parser.add_argument("--reply-delay", type=float, default=0.05, help="seconds per reply")
    parser.add_argument(
        "--paste-delay",
        type=float,
        default=0.02,
        help="seconds from reading a paste to drawing it (an Enter before that is swallowed)",
    )
    parser.add_argument(
        "--settings", default=None, help="additional settings (file or JSON); hooks merge"
    )
    # what the bridge passes Claude Code to register `agentbridge mcp` (the fake has no tools)
    parser.add_argument("--mcp-config", nargs="*", default=None, help="ignored, as Claude's")
    parser.add_argument("--allowedTools", nargs="*", default=None, help="ignored, as Claude's")
    ns = parser.parse_args(argv)
    return Options(
        session_id=ns.session_id or str(uuid.uuid4()),
        byte_log=ns.byte_log,
        reply_delay=max(0.0, ns.reply_delay),
        paste_delay=max(0.0, ns.paste_delay),
        settings=ns.settings,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (3 after a ``#fake:crash``)."""
    return FakeAgent(parse_args(argv)).run()


__all__ = ["FakeAgent", "Options", "main", "parse_args"]
