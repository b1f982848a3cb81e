"""runtimes/claude."""
