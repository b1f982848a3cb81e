"""Running and looking after the bridge: ``init``, ``up``, ``status``, ``plugins``,
``doctor``, ``restart``, ``service``, ``new-channel``."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from agentbridge import paths
from agentbridge.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    config_of,
    open_store,
    print_json,
)
from agentbridge.config import DEFAULT_CONFIG_TEXT, ConfigError
from agentbridge.ledger.migrations import SchemaTooNew
from agentbridge.ledger.store import LedgerError


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented config file (mode 0600)."""
    path = Path(args.config).expanduser() if args.config else paths.default_config_path()
    if path.exists() and not args.force:
        raise CliError(f"{path} already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(DEFAULT_CONFIG_TEXT)
    path.chmod(0o600)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    """Run the supervisor in the foreground (after checks that each fail as one line)."""
    from agentbridge.cli.preflight import check_up
    from agentbridge.supervisor.up import run_supervisor

    config = config_of(args)
    check_up(config, console=not args.no_console)
    return run_supervisor(config, open_console=not args.no_console)


def cmd_plugins(args: argparse.Namespace) -> int:
    """Show loaded plugins, their hooks, and the ones that failed to load."""
    from agentbridge.plugin.manager import build_plugin_manager

    host = build_plugin_manager()
    ok = EXIT_OK if all(r.loaded for r in host.reports) else EXIT_ERROR
    if args.json:
        print_json([r.__dict__ for r in host.reports])
        return ok
    for r in host.reports:
        status = "ok " if r.loaded else "ERR"
        detail = ", ".join(r.hooks) if r.loaded else r.error
        print(f"{status} {r.name:<36} {r.source:<20} {detail}")
    return ok


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check what the bridge needs: config, tmux, the ledger, the agent CLIs, each plugin's."""
    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"{'ok ' if ok else 'ERR'} {what:<14} {detail}")

    try:
        config = config_of(args)
        report(True, "config", str(config.path or "embedded defaults (no config file)"))
    except ConfigError as exc:
        report(False, "config", str(exc))
        return EXIT_ERROR
    tmux = shutil.which("tmux")
    if tmux:
        version = subprocess.run([tmux, "-V"], capture_output=True, text=True).stdout.strip()
        report(True, "tmux", f"{tmux} ({version})")
    else:
        report(False, "tmux", "not found: install tmux (apt-get install tmux / brew install tmux)")

    async def check_ledger() -> str:
        ledger = await open_store(config)
        try:
            stats = await ledger.stats()
        finally:
            await ledger.close()
        return f"{config.ledger.path} ({sum(stats['messages'].values())} messages)"

    try:
        report(True, "ledger", asyncio.run(check_ledger()))
    except (LedgerError, SchemaTooNew, OSError) as exc:
        report(False, "ledger", str(exc))
    from agentbridge.cli.preflight import cwd_problem
    from agentbridge.plugin.manager import build_plugin_manager

    host = build_plugin_manager()
    runtimes = host.runtimes()
    for agent in config.agents.values():
        cwd = cwd_problem(config, agent.name)
        if cwd is not None:
            report(False, f"agent {agent.name}", cwd.removeprefix("config: "))
        profile = runtimes.get(agent.runtime)
        argv = agent.command or list(getattr(profile, "default_command", ()))
        found = shutil.which(argv[0]) if argv else None
        report(
            bool(found),
            f"agent {agent.name}",
            f"{agent.runtime}: {found or (argv[0] if argv else 'no command') + ' not found'}",
        )
    from agentbridge.plugin.doctor import run_checks

    for check in run_checks(host.pm, config):  # each plugin's own (the doctor_checks hook)
        report(check.ok, check.what, check.detail)
    return EXIT_OK if problems == 0 else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    """Agents' health and the queues (live from the supervisor when it runs)."""
    from agentbridge.cli.status import run_status

    return run_status(config_of(args), as_json=args.json)


def cmd_new_channel(args: argparse.Namespace) -> int:
    """Scaffold a channel plugin distribution that passes the contract suite."""
    from agentbridge.plugin.scaffold import scaffold_channel

    try:
        path = scaffold_channel(args.name, Path(args.dest).expanduser())
    except (ValueError, FileExistsError) as exc:
        raise CliError(str(exc)) from exc
    print(path)
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    """Ask the running supervisor to restart an agent (also clears a degraded state)."""
    from agentbridge.supervisor.control import request

    answer = asyncio.run(request(config_of(args), "restart", agent=args.agent))
    if answer is None:
        raise CliError("no supervisor is running (start it with `agentbridge up`)")
    if not answer.get("ok", False):
        raise CliError(str(answer.get("error", "restart refused")))
    print(f"agent {args.agent}: restart requested")
    return EXIT_OK


def cmd_service(args: argparse.Namespace) -> int:
    """Print a user-service unit that runs ``agentbridge up``."""
    from agentbridge.cli.service import launchd_plist, systemd_unit

    config = Path(args.config).expanduser().resolve() if args.config else None
    print(launchd_plist(config) if args.launchd else systemd_unit(config), end="")
    return EXIT_OK


def add_setup_parsers(sub: Any) -> None:
    """``init`` and ``up`` (first in the help)."""
    p = sub.add_parser("init", help="write a commented config file (mode 0600)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("up", help="run the bridge (supervisor, agents, channels) in the foreground")
    p.add_argument("--no-console", action="store_true", help="do not start the web console")
    p.set_defaults(func=cmd_up)


def add_admin_parsers(sub: Any) -> None:
    """``status``, ``plugins``, ``doctor``, ``restart``, ``service``, ``new-channel``."""
    p = sub.add_parser("status", help="agents' health, queues, outbox")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("plugins", help="list plugins and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("doctor", help="check tmux, the ledger, the agent CLIs and the plugins")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("restart", help="restart an agent (also after it was degraded)")
    p.add_argument("agent")
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("service", help="print a systemd (or launchd) unit running `up`")
    p.add_argument("--launchd", action="store_true", help="macOS launchd plist")
    p.set_defaults(func=cmd_service)

    p = sub.add_parser("new-channel", help="scaffold a channel plugin distribution")
    p.add_argument("name")
    p.add_argument("--dest", default=".")
    p.set_defaults(func=cmd_new_channel)
