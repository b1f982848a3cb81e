"""How the real Claude Code and Codex CLIs are launched offline against the mock model.

Why here: the real-CLI tests and the paste-limit measurement (``scripts/measure_paste_limit.py``)
must start the CLIs the same way: HOME in a scratch dir, the mock as their API and as their
only proxy (it refuses non-loopback hosts), so nothing leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

from agentbridge.config import AgentConfig

__all__ = ["CODEX_CONFIG", "claude_agent", "codex_agent", "proxy_env"]

CODEX_CONFIG = """\
model = "mock-model"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[features]
plugins = false         # else it calls github.com, api.github.com and chatgpt.com at start
remote_plugin = false

[model_providers.mock]
name = "mock"
base_url = "{base}/v1"
env_key = "MOCK_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def proxy_env(base_url: str) -> dict[str, str]:
    """The mock as the CLI's only proxy: a request to any other host is refused (403)."""
    return {"HTTPS_PROXY": base_url, "HTTP_PROXY": base_url, "NO_PROXY": "127.0.0.1,localhost"}


def claude_agent(
    binary: Path, base_url: str, root: Path, name: str = "claude", cwd: Path | None = None
) -> AgentConfig:
    """Claude Code with HOME under ``root``, the mock as its API."""
    return AgentConfig(
        name=name,
        runtime="claude-code",
        command=[str(binary)],
        cwd=cwd or root / "work",
        env={
            "HOME": str(root / "home"),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_AUTH_TOKEN": "sk-test",
            **proxy_env(base_url),
        },
    )


def codex_agent(
    binary: Path, base_url: str, root: Path, name: str = "codex", cwd: Path | None = None
) -> AgentConfig:
    """Codex with CODEX_HOME under ``root`` holding the user's part of config.toml."""
    codex_home = root / "home" / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base=base_url))
    return AgentConfig(
        name=name,
        runtime="codex",
        command=[str(binary)],
        cwd=cwd or root / "work",
        env={
            "HOME": str(root / "home"),
            "CODEX_HOME": str(codex_home),
            "MOCK_API_KEY": "sk-test",
            **proxy_env(base_url),
        },
    )
