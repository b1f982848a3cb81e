"""The ``agentbridge`` command. Each subcommand is a small function; errors are one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentbridge import __version__, paths
from agentbridge.cli.input import add_global_flags, field_arg, text_arg
from agentbridge.cli.preflight import PreflightError
from agentbridge.config import DEFAULT_CONFIG_TEXT, Config, ConfigError, load_config
from agentbridge.ledger.migrations import SchemaTooNew
from agentbridge.ledger.store import IdempotencyConflict, LedgerError, LedgerStore, open_ledger
from agentbridge.models import Message
from agentbridge.states import MessageState

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_FAILED, EXIT_QUARANTINED, EXIT_TIMEOUT, EXIT_INTERRUPTED = 3, 4, 5, 6


class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config).expanduser() if args.config else None)


async def _open_ledger(config: Config) -> LedgerStore:
    return await open_ledger(
        config.ledger.target,
        synchronous=config.ledger.synchronous,
        max_attempts=config.ledger.max_attempts,
    )


def _with_ledger(
    fn: Callable[[argparse.Namespace, Config, LedgerStore], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = _config(args)

        async def main() -> int:
            ledger = await _open_ledger(config)
            try:
                return await fn(args, config, ledger)
            finally:
                await ledger.close()

        return asyncio.run(main())

    return run


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# --------------------------------------------------------------------------- commands


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


@_with_ledger
async def cmd_send(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """Ingest a message through the local channel; print its id once it is durable."""
    text = text_arg(args.text)
    if not text.strip():
        raise CliError("refusing to send an empty message")
    agent = args.agent
    if agent is None:  # routes pick it (and strip an @mention)
        from agentbridge.supervisor.routing import Unroutable, route_for

        try:
            decision = route_for(config, args.channel, args.conversation, args.sender, text)
        except Unroutable as exc:
            raise CliError(str(exc)) from exc
        agent, text = decision.agent, decision.text
    if agent not in config.agents:
        raise CliError(f"no agent named {agent!r} (configured: {', '.join(config.agents)})")
    try:
        result = await ledger.ingest(
            field_arg(args.channel),
            field_arg(args.conversation),
            field_arg(args.sender),
            text,
            key=None if args.key is None else field_arg(args.key),
            agent=agent,
            priority=1 if args.control else 0,
        )
    except IdempotencyConflict as exc:
        raise CliError(str(exc)) from exc
    print(result.message.id)
    from agentbridge.supervisor.control import poke_supervisor

    await poke_supervisor(config)
    return EXIT_OK


@_with_ledger
async def cmd_messages(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """List messages."""
    if args.state and args.state not in {s.value for s in MessageState}:
        states = ", ".join(s.value for s in MessageState)
        raise CliError(f"unknown state {args.state!r} (one of: {states})", EXIT_USAGE)
    messages = await ledger.list_messages(state=args.state, limit=args.limit)
    if args.json:
        _print_json([m.to_json() for m in messages])
        return EXIT_OK
    now = time.time()
    print(f"{'ID':>6}  {'STATE':<11} {'AGENT':<10} {'FROM':<16} {'AGE':>5}  TEXT")
    for m in messages:
        first = m.text.splitlines()[0] if m.text else ""
        sender = f"{m.channel}:{m.sender}"[:16]
        age = _age(now - m.created_at)
        print(f"{m.id:>6}  {m.state:<11} {m.agent:<10} {sender:<16} {age:>5}  {first[:60]}")
    return EXIT_OK


def _show_text(message: Message, events: list[Any], replies: list[Any]) -> None:
    print(f"message {message.id}  [{message.state}]  attempt {message.attempt}")
    print(
        f"  channel {message.channel}  conversation {message.conversation}  "
        f"sender {message.sender}  agent {message.agent}"
    )
    if message.reason:
        print(f"  reason: {message.reason}")
    print("  text:")
    for line in message.text.splitlines()[:20]:
        print(f"    {line}")
    if message.reply is not None:
        print("  reply:")
        for line in message.reply.splitlines()[:40]:
            print(f"    {line}")
    print("  history:")
    for e in events:
        stamp = time.strftime("%H:%M:%S", time.localtime(e.at)) + f".{int(e.at % 1 * 1000):03d}"
        move = f"{e.from_state or ''} -> {e.to_state}" if e.to_state else e.kind
        print(f"    {stamp}  {e.actor:<10} {move:<24} {e.detail}")
    for r in replies:
        print(
            f"  reply #{r.id}: {r.state} to {r.channel}:{r.conversation}"
            f" attempts={r.attempts} {r.last_error or ''}"
        )


@_with_ledger
async def cmd_show(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """One message, its history and its reply."""
    message = await ledger.get(args.id)
    events = await ledger.events_for(args.id)
    replies = await ledger.list_replies(message_id=args.id)
    if args.json:
        data = message.to_json()
        data["events"] = [e.to_json() for e in events]
        data["outbox"] = [r.to_json() for r in replies]
        _print_json(data)
    else:
        _show_text(message, events, replies)
    return EXIT_OK


@_with_ledger
async def cmd_wait(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """Wait until a message is completed, failed, quarantined or interrupted; print the reply."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while True:
        message = await ledger.get(args.id)
        if message.state == MessageState.COMPLETED:
            print(message.reply or "")
            return EXIT_OK
        if message.state == MessageState.FAILED:
            print(f"message {args.id} failed: {message.reason}", file=sys.stderr)
            return EXIT_FAILED
        if message.state == MessageState.QUARANTINED:
            print(f"message {args.id} quarantined: {message.reason}", file=sys.stderr)
            return EXIT_QUARANTINED
        if message.state == MessageState.INTERRUPTED:
            print(f"message {args.id} {message.reason}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if deadline is not None and time.monotonic() > deadline:
            print(f"message {args.id} still {message.state} after {args.timeout}s", file=sys.stderr)
            return EXIT_TIMEOUT
        await asyncio.sleep(0.05)


@_with_ledger
async def cmd_reply(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """An agent (or a script) queues an extra reply to a message's conversation."""
    text = text_arg(args.text)
    message = await ledger.get(args.id)
    key = f"agent-reply:{message.id}:{args.key}" if args.key else None
    if key is None:
        from agentbridge.ledger.store import text_hash

        key = f"agent-reply:{message.id}:{text_hash(text)[:16]}"
    try:
        item = await ledger.enqueue_reply(
            message.channel,
            message.conversation,
            text,
            key,
            message_id=message.id,
            reply_to=message.platform_id,
        )
    except IdempotencyConflict as exc:
        raise CliError(str(exc)) from exc
    print(f"reply {item.id} queued ({item.state})")
    from agentbridge.supervisor.control import poke_supervisor

    await poke_supervisor(config)
    return EXIT_OK


@_with_ledger
async def cmd_quarantine(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """List, requeue or drop quarantined messages."""
    if args.action == "list":
        rows = await ledger.list_messages(state="quarantined")
        if args.json:
            _print_json([m.to_json() for m in rows])
        for m in [] if args.json else rows:
            print(f"{m.id:>6}  attempt {m.attempt}  {m.channel}:{m.conversation}  {m.reason}")
        if not rows and not args.json:
            print("no quarantined messages")
        return EXIT_OK
    if args.id is None:
        raise CliError(f"quarantine {args.action} needs a message id", EXIT_USAGE)
    if args.action == "requeue":
        m = await ledger.requeue_quarantined(args.id)
    else:
        m = await ledger.drop(args.id)
    print(f"message {m.id} is now {m.state}")
    from agentbridge.supervisor.control import poke_supervisor

    await poke_supervisor(config)
    return EXIT_OK


@_with_ledger
async def cmd_outbox(args: argparse.Namespace, config: Config, ledger: LedgerStore) -> int:
    """List replies; resend one (``retry``: e.g. an ``unknown`` one you checked did not
    arrive) or close an ``unknown`` one you saw arrive (``sent``)."""
    if args.action in ("retry", "sent"):
        if args.id is None:
            raise CliError(f"outbox {args.action} needs a reply id", EXIT_USAGE)
        if args.action == "sent":
            item = await ledger.mark_landed(args.id)
        else:
            item = await ledger.retry_reply(args.id)
        print(f"reply {item.id} is now {item.state}")
        from agentbridge.supervisor.control import poke_supervisor

        await poke_supervisor(config)
        return EXIT_OK
    items = await ledger.list_replies(state=args.state)
    if args.json:
        _print_json([i.to_json() for i in items])
        return EXIT_OK
    for i in items:
        print(
            f"{i.id:>6}  {i.state:<8} msg {i.message_id}  {i.channel}:{i.conversation}"
            f"  attempts={i.attempts}  {i.last_error or ''}"
        )
    if any(i.state == "unknown" for i in items):
        print(
            "unknown = may or may not have arrived; never resent on its own. Check the chat,"
            " then `agentbridge outbox retry ID` (resend) or `agentbridge outbox sent ID`."
        )
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """Show loaded plugins, their hooks, and the ones that failed to load."""
    from agentbridge.plugin.manager import build_plugin_manager

    host = build_plugin_manager()
    ok = EXIT_OK if all(r.loaded for r in host.reports) else EXIT_ERROR
    if args.json:
        _print_json([r.__dict__ for r in host.reports])
        return ok
    for r in host.reports:
        status = "ok " if r.loaded else "ERR"
        detail = ", ".join(r.hooks) if r.loaded else r.error
        print(f"{status} {r.name:<36} {r.source:<20} {detail}")
    return EXIT_OK if all(r.loaded for r in host.reports) else EXIT_ERROR


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check what the bridge needs: config, tmux, the ledger, the agent CLIs."""
    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"{'ok ' if ok else 'ERR'} {what:<14} {detail}")

    try:
        config = _config(args)
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
        ledger = await _open_ledger(config)
        try:
            stats = await ledger.stats()
        finally:
            await ledger.close()
        return f"{config.ledger.path} ({sum(stats['messages'].values())} messages)"

    try:
        report(True, "ledger", asyncio.run(check_ledger()))
    except (LedgerError, SchemaTooNew, OSError) as exc:
        report(False, "ledger", str(exc))
    from agentbridge.plugin.manager import build_plugin_manager

    runtimes = build_plugin_manager().runtimes()
    from agentbridge.cli.preflight import cwd_problem

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
    return EXIT_OK if problems == 0 else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    """Agents' health and the queues (live from the supervisor when it runs)."""
    from agentbridge.cli.status import run_status

    return run_status(_config(args), as_json=args.json)


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

    answer = asyncio.run(request(_config(args), "restart", agent=args.agent))
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


def cmd_up(args: argparse.Namespace) -> int:
    """Run the supervisor in the foreground (after checks that each fail as one line)."""
    from agentbridge.cli.preflight import check_up
    from agentbridge.supervisor.up import run_supervisor

    config = _config(args)
    check_up(config, console=not args.no_console)
    return run_supervisor(config, open_console=not args.no_console)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs test)."""
    parser = argparse.ArgumentParser(prog="agentbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"agentbridge {__version__}")
    config_help = "config file (default: $AGENTBRIDGE_CONFIG or the platform config dir)"
    parser.add_argument("--config", help=config_help)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a commented config file (mode 0600)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("up", help="run the bridge (supervisor, agents, channels) in the foreground")
    p.add_argument("--no-console", action="store_true", help="do not start the web console")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("send", help="send a message through the local channel")
    p.add_argument("--channel", default="local")
    p.add_argument("--conversation", default="cli")
    p.add_argument("--sender", default=os.environ.get("USER", "cli"))
    p.add_argument("--key", help="idempotency key (same key + same text = same message)")
    p.add_argument("--agent", help="agent name (default: by routes)")
    p.add_argument("--control", action="store_true", help="use the priority lane")
    p.add_argument("text", help="the message, or - to read stdin")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("wait", help="wait for a message's reply; exit code says how it ended")
    p.add_argument("id", type=int)
    p.add_argument("--timeout", type=float, default=None)
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("reply", help="queue an extra reply to a message's conversation")
    p.add_argument("id", type=int)
    p.add_argument("text", help="the reply, or - to read stdin")
    p.add_argument("--key", help="idempotency key: the same key is never sent twice")
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser("messages", help="list messages")
    states = ", ".join(s.value for s in MessageState)
    p.add_argument("--state", help=f"only messages in this state ({states})")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_messages)

    p = sub.add_parser("show", help="one message with its history and reply")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("quarantine", help="list, requeue or drop quarantined messages")
    p.add_argument("action", choices=["list", "requeue", "drop"])
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("outbox", help="list replies, retry one, or mark an unknown one sent")
    p.add_argument("action", choices=["list", "retry", "sent"], nargs="?", default="list")
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox)

    p = sub.add_parser("status", help="agents' health, queues, outbox")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("plugins", help="list plugins and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("doctor", help="check tmux, the ledger and the agent CLIs")
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
    for subparser in sub.choices.values():
        add_global_flags(subparser, config_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one subcommand; any expected error is one line on stderr."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except (CliError, ConfigError, SchemaTooNew, LedgerError, PreflightError) as exc:
        print(f"agentbridge: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
