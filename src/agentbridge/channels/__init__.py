"""Built-in channels: local CLI, web console, HTTP endpoint, scheduler."""
