"""agentbridge: a durable bridge between chat channels and AI coding agents in tmux."""

__version__ = "0.1.0"
