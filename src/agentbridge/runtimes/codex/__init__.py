"""runtimes/codex."""
