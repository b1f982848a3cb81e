"""Pieces every runtime profile shares: the clean pane environment, JSON merging, state files.

Why a whitelist: the pane runs an AI agent that can read its own environment; nothing of the
supervisor's environment (tokens, API keys of channels) may reach it unless the agent's own
``env`` table in the config says so.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentbridge.config import AgentConfig

__all__ = [
    "ENV_WHITELIST",
    "agent_home",
    "atomic_write",
    "child_pids",
    "clean_env",
    "clean_marked_hooks",
    "hook_command",
    "load_json",
    "merge_hooks",
    "relay_hooks",
    "remove_marked_hooks",
    "resolve_cwd",
    "stable_session_id",
    "strip_ansi",
]

#: The only variables copied from agentbridge's own environment into a pane.
ENV_WHITELIST = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "COLORTERM",
    "SHELL",
    "TMPDIR",
    "TZ",
)

HOOK_MARK = "agentbridge.hook_relay"

_ANSI = re.compile(
    r"\x1b(?:\[[0-9;:?<=>]*[ -/]*[@-~]"  # CSI (SGR, cursor…)
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|[()][0-9A-Za-z]|[=>78DEHMNOPZc])"  # charset and short escapes
)


def strip_ansi(screen: str) -> str:
    """A capture taken with ``-e`` (SGR kept) as plain text, so one matcher reads both."""
    return _ANSI.sub("", screen) if "\x1b" in screen else screen


def clean_env(agent: AgentConfig, profile_env: Mapping[str, str]) -> dict[str, str]:
    """Whitelisted parent variables, then the profile's, then the agent's own ``env`` (wins)."""
    env = {key: os.environ[key] for key in ENV_WHITELIST if key in os.environ}
    env.setdefault("TERM", "xterm-256color")
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(profile_env)
    env.update(agent.env)
    if env.get("TERM") in ("", "dumb", "screen", "tmux"):
        env["TERM"] = "xterm-256color"
    return env


def agent_home(agent: AgentConfig) -> Path:
    """The HOME the agent will really see: its ``env.HOME`` first, then ours."""
    home = agent.env.get("HOME") or os.environ.get("HOME") or str(Path.home())
    return Path(home).expanduser()


def env_path(agent: AgentConfig, name: str) -> Path | None:
    """A path-valued variable of the agent's env (``~`` relative to the agent's HOME)."""
    value = agent.env.get(name)
    if not value:
        return None
    if value.startswith("~"):
        return agent_home(agent) / value[1:].lstrip("/")
    return Path(value)


def resolve_cwd(agent: AgentConfig, state_dir: Path) -> Path:
    """The agent's working directory, absolute and symlink-free (CLIs key trust on it)."""
    cwd = agent.cwd if agent.cwd is not None else state_dir / "workspace"
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd.resolve()


def load_json(path: Path) -> dict[str, Any]:
    """A JSON object file; missing or empty → {}. A corrupt file raises: never clobber it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def hook_command(hook_events: Path) -> str:
    """The relay command a hook runs: a shell one-liner (see ``hook_relay.shell_command``)."""
    from agentbridge.hook_relay import shell_command

    return shell_command(str(hook_events))


def _is_ours(hook: Any) -> bool:
    return HOOK_MARK in str(hook.get("command", "") if isinstance(hook, dict) else hook)


def remove_marked_hooks(hooks: dict[str, Any]) -> dict[str, Any]:
    """``hooks`` without any entry holding the ``agentbridge.hook_relay`` marker.

    Every user entry is kept as it was; a group (or an event) left empty only because our
    entries went is dropped, so a clean-up leaves the user's file as it was before we came.
    """
    cleaned: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            cleaned[event] = groups
            continue
        kept: list[Any] = []
        for group in groups:
            inner = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(inner, list) and any(_is_ours(h) for h in inner):
                rest = [h for h in inner if not _is_ours(h)]
                if not rest:
                    continue
                group = {**group, "hooks": rest}
            kept.append(group)
        if kept or not groups:
            cleaned[event] = kept
    return cleaned


def relay_hooks(events: list[str], command: str, background: bool = False) -> dict[str, Any]:
    """A ``hooks`` table holding only our relay command for each event.

    ``background``: mark the hooks ``"async": true`` (Claude Code runs them without waiting):
    a relay only records, it never answers, so the agent need not wait for it.
    """
    hook: dict[str, Any] = {"type": "command", "command": command}
    if background:
        hook["async"] = True
    return {event: [{"hooks": [dict(hook)]}] for event in events}


def merge_hooks(
    hooks: dict[str, Any], events: list[str], command: str, background: bool = False
) -> dict[str, Any]:
    """Add our relay command to each event's hook list, keeping every user hook.

    Idempotent: an entry holding the ``agentbridge.hook_relay`` marker is replaced, not added.
    """
    merged = remove_marked_hooks(hooks)
    for event, groups in relay_hooks(events, command, background).items():
        current = merged.get(event)
        merged[event] = [*(current if isinstance(current, list) else []), *groups]
    return merged


def clean_marked_hooks(path: Path) -> bool:
    """Remove our marked entries from a JSON file's ``hooks`` (a user's settings.json or
    hooks.json, where an older agentbridge merged them); every other key and hook is kept.

    Returns True when the file changed. A file left as ``{}`` or ``{"hooks": {}}`` only because
    our entries went is deleted (we created it). A corrupt file is left alone.
    """
    try:
        data = load_json(path)
    except (ValueError, OSError):
        return False
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return False
    cleaned = remove_marked_hooks(hooks)
    if cleaned == hooks:
        return False
    if cleaned:
        data["hooks"] = cleaned
    else:
        del data["hooks"]
    if not data:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, json.dumps(data, indent=2) + "\n", _mode_of(path))
    return True


def _mode_of(path: Path) -> int:
    """The permission bits of an existing file (kept when we rewrite a user's file)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o600


def stable_session_id(state_dir: Path, file_name: str = "session-id") -> str:
    """The session id persisted in ``state_dir`` (created once), so a restart can resume it."""
    path = state_dir / file_name
    try:
        value = path.read_text(encoding="utf-8").strip()
        return str(uuid.UUID(value))
    except (FileNotFoundError, ValueError):
        value = str(uuid.uuid4())
        atomic_write(path, value + "\n")
        return value


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc); [] when unknown. The CLI may run under a
    launcher (``env``, node) whose pid is the pane's."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(p) for p in text.split()]
