"""The TOML config: parsed once, validated strictly, every error one line naming the key.

An empty or missing file is valid: the embedded defaults run one ``demo`` agent and the web
console. Unknown keys are errors (a misspelt key silently ignored is a lost setting).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agentbridge import paths

RUNTIMES = ("claude-code", "codex", "demo", "generic")


class ConfigError(Exception):
    """A bad config file; ``str()`` is one readable line naming the key."""


@dataclass(frozen=True)
class AgentConfig:
    """One ``[agents.NAME]`` table."""

    name: str
    runtime: str = "demo"
    command: list[str] | None = None
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    resume: bool = True
    ready_pattern: str | None = None  # generic runtime: regex that means "ready for input"
    progress_timeout: float = 300.0  # in flight with no agent activity this long → unhealthy
    launch_grace: float = 30.0
    rate_limit_recheck: float = 30.0  # rate-limited with no reset time on screen: look again
    restart_window: float = 300.0  # crash-loop breaker: this many seconds…
    max_restarts: int = 5  # …and this many restarts in it → degraded
    node: str | None = None  # fleet: the node that runs it (None: whichever node lists it)
    relocatable: bool = False  # fleet: another live node may take it over when its node dies


@dataclass(frozen=True)
class LedgerConfig:
    """``[ledger]``: where and how durably the ledger is written."""

    path: Path
    synchronous: str = "full"
    retention_days: float = 30.0
    #: a pruned message's idempotency key is remembered this long (late redeliveries)
    tombstone_days: float = 90.0
    max_attempts: int = 3
    lease_seconds: float = 600.0
    #: a PostgreSQL ledger (``postgresql://…``) instead of the SQLite file at ``path``
    url: str | None = None

    @property
    def target(self) -> str | Path:
        """What ``open_ledger`` opens: the PostgreSQL URL if one is set, else the file."""
        return self.url or self.path


@dataclass(frozen=True)
class OutboxConfig:
    """``[outbox]``: reply delivery policy."""

    backoff: tuple[float, ...] = (5.0, 25.0, 120.0, 600.0)
    max_retries: int = 5
    ttl_seconds: float = 86400.0
    drain_budget_seconds: float = 60.0
    #: a reply that needs more parts goes as one file (reply.md) where the channel uploads
    max_parts: int = 5


@dataclass(frozen=True)
class ConsoleConfig:
    """``[console]``: the local web console."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: tuple[str, ...] = ()
    max_file_bytes: int = 100 * 1024 * 1024  #: largest agent file offered for download


@dataclass(frozen=True)
class InjectionConfig:
    """``[injection]``: how prompts are pasted."""

    #: longest body pasted whole; None = the runtime profile's measured ``paste_limit``
    spill_threshold: int | None = None
    settle_ms: float = 0.0  #: wait between the paste showing and Enter (none needed)
    verify_timeout: float = 1.5


@dataclass(frozen=True)
class PermissionsConfig:
    """``[permissions]``: permission prompts relayed to the chat (``supervisor.permissions``)."""

    enabled: bool = True
    timeout: float = 600.0  #: seconds until an unanswered request is denied


@dataclass(frozen=True)
class AttachmentsConfig:
    """``[attachments]``: files that come with messages (``agent/attachments.py``)."""

    max_bytes: int = 20 * 1024 * 1024  #: per file; a larger one is refused with a reply


@dataclass(frozen=True)
class Route:
    """``[[routes]]``: messages matching every key set (channel, conversation, sender) go to
    ``agent``; see ``routing`` for the rules (specificity, @mentions, the default route)."""

    channel: str
    agent: str
    conversation: str | None = None
    sender: str | None = None


#: keys of any ``[channels.X]`` table that the core reads (progress while a turn runs)
PROGRESS_KEYS = ("progress", "progress_interval")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path | None
    ledger: LedgerConfig
    agents: dict[str, AgentConfig]
    outbox: OutboxConfig = OutboxConfig()
    console: ConsoleConfig = ConsoleConfig()
    injection: InjectionConfig = InjectionConfig()
    permissions: PermissionsConfig = PermissionsConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    routes: tuple[Route, ...] = ()
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_dir: Path = field(default_factory=paths.data_dir)
    tmux_socket: str = "agentbridge"
    mcp: dict[str, Any] = field(default_factory=dict)  #: ``[mcp]``, read by supervisor/control_mcp
    #: the core's keys of each ``[channels.X]`` (``PROGRESS_KEYS``), read by supervisor/progress
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    fleet: dict[str, Any] = field(default_factory=dict)  #: ``[fleet]``: supervisor/fleet_config
    metrics: dict[str, Any] = field(default_factory=dict)  #: read by supervisor/metrics_http


def _expect(value: Any, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"config: {key} must be a number, not {value!r}")
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"config: {key} must be a {want}, not {value!r}")
    return value


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"config: unknown key {where}{key!r} (allowed: {', '.join(sorted(allowed))})"
            )


def _at_least(value: Any, key: str, least: int, kind: Any = int, over: bool = False) -> Any:
    """A count, size or time of at least ``least`` (``over``: more): 0 or below meant nothing."""
    if _expect(value, kind, key) < least or (over and value == least):
        bound = f"{'>' if over else '>='} {least}, not {value!r}"
        raise ConfigError(
            f"config: {key} must be {bound}: raise it, or delete the line for the default"
        )
    return value


def _positive(value: Any, key: str) -> float:
    return float(_at_least(value, key, 0, (int, float), over=True))


def _agent(name: str, table: dict[str, Any]) -> AgentConfig:
    where = f"agents.{name}."
    _check_keys(
        _expect(table, dict, f"agents.{name}"),
        {
            "runtime",
            "command",
            "cwd",
            "env",
            "resume",
            "ready_pattern",
            "progress_timeout",
            "launch_grace",
            "rate_limit_recheck",
            "restart_window",
            "max_restarts",
            "node",
            "relocatable",
        },
        where,
    )
    runtime = _expect(table.get("runtime", "demo"), str, where + "runtime")
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"config: {where}runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}"
        )
    command = table.get("command")
    if command is not None:
        _expect(command, list, where + "command")
        if not command or not all(isinstance(part, str) for part in command):
            raise ConfigError(f"config: {where}command must be a non-empty list of strings")
    if runtime == "generic" and command is None:
        raise ConfigError(f"config: {where}command is required for the generic runtime")
    env = _expect(table.get("env", {}), dict, where + "env")
    for key, value in env.items():
        _expect(value, str, f"{where}env.{key}")
    cwd = table.get("cwd")
    return AgentConfig(
        name=name,
        runtime=runtime,
        command=list(command) if command else None,
        cwd=Path(_expect(cwd, str, where + "cwd")).expanduser() if cwd is not None else None,
        env=dict(env),
        resume=_expect(table.get("resume", True), bool, where + "resume"),
        ready_pattern=table.get("ready_pattern"),
        progress_timeout=_positive(
            table.get("progress_timeout", 300.0), where + "progress_timeout"
        ),
        launch_grace=_positive(table.get("launch_grace", 30.0), where + "launch_grace"),
        rate_limit_recheck=_positive(
            table.get("rate_limit_recheck", 30.0), where + "rate_limit_recheck"
        ),
        restart_window=_positive(table.get("restart_window", 300.0), where + "restart_window"),
        max_restarts=int(_positive(table.get("max_restarts", 5), where + "max_restarts")),
        node=_expect(table.get("node"), (str, type(None)), where + "node"),  # [fleet] node
        relocatable=_expect(table.get("relocatable", False), bool, where + "relocatable"),
    )


LEDGER_URL_ENV = "AGENTBRIDGE_LEDGER_URL"


def _is_postgres(url: str) -> bool:
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower().split("+", 1)[0] in ("postgresql", "postgres")


def _ledger_url(led: dict[str, Any]) -> str | None:
    """``[ledger] url`` or ``AGENTBRIDGE_LEDGER_URL`` (which wins): a PostgreSQL URL. The
    error never repeats the value (it may hold a password)."""
    url = os.environ.get(LEDGER_URL_ENV) or _expect(led.get("url"), (str, type(None)), "ledger.url")
    if url is not None and not _is_postgres(url):
        raise ConfigError(
            "config: ledger.url must be a postgresql:// URL (use ledger.path for SQLite)"
        )
    return url


def parse_config(raw: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document into a ``Config``."""
    _check_keys(
        raw,
        {
            "ledger",
            "agents",
            "outbox",
            "console",
            "injection",
            "permissions",
            "attachments",
            "routes",
            "channels",
            "schedules",
            "state_dir",
            "tmux_socket",
            "mcp",
            "fleet",
            "metrics",
        },
        "",
    )
    state_dir = Path(_expect(raw.get("state_dir", str(paths.data_dir())), str, "state_dir"))
    state_dir = state_dir.expanduser()

    led_raw = raw.get("ledger", {})
    if isinstance(led_raw, str):  # ``ledger = "postgresql://…"`` (or a path) as a shorthand
        led_raw = {"url" if _is_postgres(led_raw) else "path": led_raw}
    led = _expect(led_raw, dict, "ledger")
    _check_keys(
        led,
        {
            "path",
            "url",
            "synchronous",
            "retention_days",
            "tombstone_days",
            "max_attempts",
            "lease_seconds",
        },
        "ledger.",
    )
    sync = _expect(led.get("synchronous", "full"), str, "ledger.synchronous").lower()
    if sync not in ("full", "normal"):
        raise ConfigError(f"config: ledger.synchronous must be 'full' or 'normal', not {sync!r}")
    max_attempts = _at_least(led.get("max_attempts", 3), "ledger.max_attempts", 1)
    ledger = LedgerConfig(
        path=Path(
            _expect(led.get("path", str(state_dir / "ledger.db")), str, "ledger.path")
        ).expanduser(),
        synchronous=sync,
        retention_days=_positive(led.get("retention_days", 30), "ledger.retention_days"),
        tombstone_days=_positive(led.get("tombstone_days", 90), "ledger.tombstone_days"),
        max_attempts=max_attempts,
        lease_seconds=_positive(led.get("lease_seconds", 600), "ledger.lease_seconds"),
        url=_ledger_url(led),
    )

    agents_raw = _expect(raw.get("agents", {}), dict, "agents")
    agents = {name: _agent(name, table) for name, table in agents_raw.items()}
    if not agents:
        agents = {"demo": AgentConfig(name="demo", runtime="demo")}

    out = _expect(raw.get("outbox", {}), dict, "outbox")
    _check_keys(
        out,
        {"backoff", "max_retries", "ttl_seconds", "drain_budget_seconds", "max_parts"},
        "outbox.",
    )
    backoff = _expect(out.get("backoff", [5, 25, 120, 600]), list, "outbox.backoff")
    outbox = OutboxConfig(
        backoff=tuple(_positive(b, "outbox.backoff") for b in backoff) or (5.0,),
        max_retries=_at_least(out.get("max_retries", 5), "outbox.max_retries", 0),
        ttl_seconds=_positive(out.get("ttl_seconds", 86400), "outbox.ttl_seconds"),
        drain_budget_seconds=_positive(
            out.get("drain_budget_seconds", 60), "outbox.drain_budget_seconds"
        ),
        max_parts=_at_least(out.get("max_parts", 5), "outbox.max_parts", 1),
    )

    con = _expect(raw.get("console", {}), dict, "console")
    _check_keys(con, {"enabled", "host", "port", "allowed_hosts", "max_file_bytes"}, "console.")
    port = _expect(con.get("port", 8765), int, "console.port")
    if not 0 <= port <= 65535:
        raise ConfigError(f"config: console.port must be 0..65535, not {port}")
    console = ConsoleConfig(
        enabled=_expect(con.get("enabled", True), bool, "console.enabled"),
        host=_expect(con.get("host", "127.0.0.1"), str, "console.host"),
        port=port,
        allowed_hosts=tuple(_expect(con.get("allowed_hosts", []), list, "console.allowed_hosts")),
        max_file_bytes=_at_least(con.get("max_file_bytes", 100 << 20), "console.max_file_bytes", 1),
    )

    inj = _expect(raw.get("injection", {}), dict, "injection")
    _check_keys(inj, {"spill_threshold", "settle_ms", "verify_timeout"}, "injection.")
    injection = InjectionConfig(
        spill_threshold=(
            int(_positive(inj["spill_threshold"], "injection.spill_threshold"))
            if "spill_threshold" in inj
            else None
        ),
        settle_ms=float(_at_least(inj.get("settle_ms", 0), "injection.settle_ms", 0, (int, float))),
        verify_timeout=_positive(inj.get("verify_timeout", 1.5), "injection.verify_timeout"),
    )

    perm = _expect(raw.get("permissions", {}), dict, "permissions")
    _check_keys(perm, {"enabled", "timeout"}, "permissions.")
    permissions = PermissionsConfig(
        enabled=_expect(perm.get("enabled", True), bool, "permissions.enabled"),
        timeout=min(_positive(perm.get("timeout", 600), "permissions.timeout"), 86400.0),
    )

    routes = []
    for i, r in enumerate(_expect(raw.get("routes", []), list, "routes")):
        _expect(r, dict, f"routes[{i}]")
        _check_keys(r, {"channel", "agent", "conversation", "sender"}, f"routes[{i}].")
        agent = _expect(r.get("agent"), str, f"routes[{i}].agent")
        if agent not in agents:
            raise ConfigError(f"config: routes[{i}].agent names no configured agent: {agent!r}")
        conv, sender = r.get("conversation"), r.get("sender")
        routes.append(
            Route(
                channel=_expect(r.get("channel", "*"), str, f"routes[{i}].channel"),
                agent=agent,
                conversation=None if conv is None else str(conv),
                sender=None if sender is None else str(sender),  # Telegram ids are numbers
            )
        )

    att = _expect(raw.get("attachments", {}), dict, "attachments")
    _check_keys(att, {"max_bytes"}, "attachments.")
    attachments = AttachmentsConfig(
        max_bytes=int(_positive(att.get("max_bytes", 20 * 1024 * 1024), "attachments.max_bytes")),
    )
    channels = _expect(raw.get("channels", {}), dict, "channels")
    progress: dict[str, dict[str, Any]] = {}
    for name, table in channels.items():
        _expect(table, dict, f"channels.{name}")
        progress[name] = {k: table.pop(k) for k in PROGRESS_KEYS if k in table}  # not the plugin's
        _expect(progress[name].get("progress", False), bool, f"channels.{name}.progress")
        _positive(progress[name].get("progress_interval", 1), f"channels.{name}.progress_interval")
    schedules = _expect(raw.get("schedules", {}), dict, "schedules")
    for name, table in schedules.items():
        _expect(table, dict, f"schedules.{name}")

    return Config(
        path=path,
        ledger=ledger,
        agents=agents,
        outbox=outbox,
        console=console,
        injection=injection,
        permissions=permissions,
        attachments=attachments,
        routes=tuple(routes),
        channels={k: dict(v) for k, v in channels.items()},
        schedules={k: dict(v) for k, v in schedules.items()},
        state_dir=state_dir,
        tmux_socket=_expect(raw.get("tmux_socket", "agentbridge"), str, "tmux_socket"),
        mcp=dict(_expect(raw.get("mcp", {}), dict, "mcp")),
        progress=progress,
        fleet=dict(_expect(raw.get("fleet", {}), dict, "fleet")),
        metrics=dict(_expect(raw.get("metrics", {}), dict, "metrics")),
    )


def load_config(path: Path | None = None) -> Config:
    """Load the config file (missing file → embedded defaults); raise ``ConfigError``."""
    explicit = path is not None
    path = path or paths.default_config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"config: file not found: {path}")
        return parse_config({}, None)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: cannot read {path}: {exc}") from exc
    return parse_config(raw, path)


#: the commented config ``agentbridge init`` writes (package data: the defaults, spelled out)
DEFAULT_CONFIG_TEXT = (resources.files("agentbridge") / "default_config.toml").read_text(
    encoding="utf-8"
)
