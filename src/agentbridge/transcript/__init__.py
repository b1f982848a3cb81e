"""Transcript tailing and per-agent transcript parsers."""

from agentbridge.transcript.tail import DirWatcher, FileTail, newest_matching

__all__ = ["DirWatcher", "FileTail", "newest_matching"]
