"""``agentbridge up``: the long-lived supervisor that keeps every message moving.

Shaped like uvicorn: ``startup()`` / ``main_loop()`` / ``shutdown()``; a first SIGINT/SIGTERM
asks to stop, a second forces it. Long-lived tasks are named, watched, restarted if they crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentbridge.agent.tmux import TmuxNotFound, TmuxServer
from agentbridge.config import Config, ConfigError
from agentbridge.crashpoints import crash_point
from agentbridge.delivery.outfiles import FileRoots
from agentbridge.delivery.receipts import Receipts
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.kinds import ChangeKind, ReceiptKind
from agentbridge.ledger.store import IngestResult, LedgerStore, open_ledger
from agentbridge.models import OutboxItem
from agentbridge.plugin.manager import DuplicateChannel, PluginHost, build_plugin_manager
from agentbridge.plugin.protocols import Attachment, Channel, ChannelContext, Ingest
from agentbridge.supervisor import (
    asks,
    command_center,
    control_status,
    metrics_http,
    permission_send,
    permissions,
)
from agentbridge.supervisor.control import ControlServer, socket_path
from agentbridge.supervisor.control_mcp import handlers as mcp_handlers
from agentbridge.supervisor.control_ops import handlers as write_handlers
from agentbridge.supervisor.dispatcher import AgentWorker
from agentbridge.supervisor.fleet import Fleet
from agentbridge.supervisor.inbound_files import settle, stage_for
from agentbridge.supervisor.lock import SupervisorError
from agentbridge.supervisor.logs import FILE_ONLY, setup_logging
from agentbridge.supervisor.metrics import Metrics
from agentbridge.supervisor.routing import route_ingest

log = logging.getLogger(__name__)


class Supervisor:
    """Ledger, agents, channels, relay, wake detector and control socket, as one unit."""

    def __init__(
        self,
        config: Config,
        *,
        plugin_host: PluginHost | None = None,
        console: bool = True,
    ) -> None:
        self.config = config
        self.console = console
        self.host = plugin_host
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.fleet = Fleet(self)  # node, leases, leader (supervisor/fleet.py)
        self.lock = self.fleet.lock()
        self.ledger: LedgerStore | None = None
        self.workers: dict[str, AgentWorker] = {}
        self.channels: dict[str, Channel] = {}
        self.started_channels: list[Channel] = []
        self.relay: OutboxRelay | None = None
        self.receipts: Receipts | None = None
        self.control: ControlServer | None = None
        self.tmux: TmuxServer | None = None
        self.observer: Any = None
        self.command_center: command_center.CommandCenter | None = None  # made on first command
        self.permission_relay: permissions.PermissionRelay | None = None  # on first prompt
        self.ask_relay: asks.AskRelay | None = None  # made with the control socket
        self.metrics: Metrics | None = None  # ``[metrics] enabled``: /metrics (metrics_http)
        self.stop_event = asyncio.Event()
        self.started_at = time.time()
        self.wakes = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # ------------------------------------------------------------------ startup

    async def startup(self) -> None:
        """Bring everything up; raise ``SupervisorError`` with one readable line on failure.

        Order matters for a refusal: the channels are built (their config validated) before
        the ledger is opened, and started before any agent may claim a message, so a bad
        channel config stops ``up`` with the ledger untouched.
        """
        self.lock.acquire()
        from watchdog.observers import Observer

        self.host = self.host or build_plugin_manager()
        for report in self.host.reports:
            if not report.loaded:
                log.error("plugin %s failed to load: %s", report.name, report.error)
        runtimes = self.host.runtimes()
        try:
            channels = self.host.channels(self.config)
        except (ConfigError, DuplicateChannel) as exc:
            raise SupervisorError(str(exc)) from None
        for name, agent in self.config.agents.items():
            if agent.runtime not in runtimes:
                raise SupervisorError(f"agent {name}: no runtime profile {agent.runtime!r}")
        if not self.console:
            channels.pop("web", None)
        self.channels = channels
        self.ledger = await open_ledger(
            self.config.ledger.target,
            synchronous=self.config.ledger.synchronous,
            max_attempts=self.config.ledger.max_attempts,
        )
        self.receipts = Receipts(self.channels, self.host.pm)
        self.observer = Observer()
        self.observer.daemon = True
        self.observer.start()
        try:
            self.tmux = TmuxServer(self.config.tmux_socket)
        except TmuxNotFound as exc:
            raise SupervisorError(str(exc)) from None
        for name, agent in self.config.agents.items():
            self.workers[name] = AgentWorker(
                agent=agent,
                profile=runtimes[agent.runtime],
                ledger=self.ledger,
                tmux=self.tmux,
                config=self.config,
                receipts=self.receipts,
                supervisor_id=self.id,
                observer=self.observer,
            )
        self.relay = OutboxRelay(
            self.ledger,
            self.channels,
            self.config.outbox,
            self.host.pm,
            on_sent=self._on_reply_sent,
            on_failed=self._on_reply_failed,
            files=FileRoots.from_config(self.config),  # where an agent's files may be read
        )
        self._unsubscribe = self.ledger.on_change(self._on_ledger_change)
        if (metrics := metrics_http.attach(self)) is not None:  # fed before workers start
            self.metrics = metrics
            self._spawn("metrics", lambda: metrics_http.serve(self, metrics))
        self.control = ControlServer(
            socket_path(self.config),
            {
                **control_status.handlers(self),  # status, poke, restart, simulate-wake
                **write_handlers(self.ledger, self.config),  # the CLI's writes (one write path)
                "permission": permissions.control_handler(self, str(socket_path(self.config))),
                **mcp_handlers(self.ledger, self.config, self.workers),  # `agentbridge mcp`
                **asks.control_handlers(self),  # its `ask` tool
            },
        )
        permission_send.wrap_send(self, self.control.handlers)  # `send "yes abc12"` answers
        await self.control.start()
        await self.fleet.start_channels()
        for name in self.workers:
            self._spawn(f"agent:{name}", self.fleet.runner(name))
        self._spawn("maintenance", self._maintenance)
        self._spawn("wake-detector", self._watch_wakes)
        # after the channels: its start-up reconcile of replies left `unknown` asks them
        self._spawn("outbox-relay", self.relay.run)

    async def _start_channel(self, channel: Channel) -> None:
        assert self.ledger is not None
        ctx = ChannelContext(
            name=channel.name,
            config=self.config.channels.get(channel.name, {}),
            ingest=self._ingest_for(channel.name),
            state_dir=self.config.state_dir / "channels" / channel.name,
            ledger=self.ledger,
            status=self.status_snapshot,
            extras=permission_send.channel_extras(self),  # the console answers permissions
            max_attachment_bytes=self.config.attachments.max_bytes,
        )
        ctx.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await channel.start(ctx)
        except ConfigError as exc:  # the user's to fix (a missing token): refuse to run without it
            log.debug("channel start refused", exc_info=True)
            raise SupervisorError(str(exc)) from None
        except Exception as exc:  # one broken channel must not take the bridge down
            log.error("channel %s failed to start: %s", channel.name, exc)
            log.debug("channel start failure", exc_info=True)
            return
        self.started_channels.append(channel)
        url = getattr(channel, "url", None)
        if url:
            print(f"agentbridge: {channel.name} at {url}", file=sys.stderr, flush=True)

    def _ingest_for(self, channel: str) -> Ingest:
        async def ingest(
            conversation: str,
            sender: str,
            text: str,
            key: str | None = None,
            meta: dict[str, Any] | None = None,
            priority: int = 0,
            agent: str | None = None,
            attachments: Sequence[Attachment] = (),
        ) -> IngestResult:
            assert self.ledger is not None and self.receipts is not None
            if agent is None:  # routes pick it (and strip an @mention); Unroutable → channel
                agent, text = route_ingest(self.config, channel, conversation, sender, text)
            if answered := await permissions.intercept(self, channel, conversation, sender, text):
                return answered
            if answered := await asks.intercept(
                self, channel, conversation, sender, text, key, agent, attachments
            ):
                return answered
            target = agent
            staged, meta = stage_for(self.config, target, attachments, meta)  # fsynced first
            result = await self.ledger.ingest(
                channel,
                conversation,
                sender,
                text,
                key=key,
                agent=target,
                priority=priority,
                meta=meta,
            )
            crash_point("after_ingest")  # a kill here: the stage is placed at the claim
            settle(staged, result)
            if result.created:
                self.receipts.emit(result.message, ReceiptKind.QUEUED)
            return result

        return command_center.wrap(self, channel, ingest)  # chat commands: /stop, /status…

    def _spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """A named long-lived task, restarted (after a pause) if it ever crashes."""

        async def guarded() -> None:
            delay = 1.0
            while not self.stop_event.is_set():
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("task %s crashed; restarting in %.0fs", name, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)

        self._tasks[name] = asyncio.create_task(guarded(), name=name)

    # ------------------------------------------------------------------ events

    def _on_ledger_change(self, kind: ChangeKind, ident: int) -> None:
        if kind == ChangeKind.OUTBOX and self.relay is not None:
            self.relay.poke()
        elif kind == ChangeKind.MESSAGE:
            for worker in self.workers.values():
                worker.poke()

    def _on_reply_sent(self, item: OutboxItem) -> None:
        if item.message_id is not None:
            asyncio.get_running_loop().create_task(
                self._receipt_for(item.message_id, ReceiptKind.REPLIED)
            )

    def _on_reply_failed(self, item: OutboxItem, error: str) -> None:
        if item.message_id is not None:
            asyncio.get_running_loop().create_task(
                self._receipt_for(
                    item.message_id, ReceiptKind.FAILED, f"reply not delivered: {error}"
                )
            )

    async def _receipt_for(self, message_id: int, status: ReceiptKind, detail: str = "") -> None:
        assert self.ledger is not None and self.receipts is not None
        with contextlib.suppress(Exception):
            self.receipts.emit(await self.ledger.get(message_id), status, detail)

    async def _maintenance(self) -> None:
        """Hourly: prune terminal rows past retention."""
        assert self.ledger is not None
        while True:
            removed = await self.ledger.prune(
                self.config.ledger.retention_days * 86400,
                self.config.ledger.tombstone_days * 86400,
            )
            if any(removed):
                log.info("pruned %d messages and %d replies past retention", *removed)
            await asyncio.sleep(3600)

    async def _watch_wakes(self) -> None:
        from agentbridge.supervisor.wake import WakeDetector

        detector = WakeDetector(self.on_wake)
        await detector.run()

    async def on_wake(self, slept: float) -> None:
        """The host slept: probe health → restart if needed → recovery scan → tell plugins."""
        assert self.ledger is not None and self.host is not None
        self.wakes += 1
        log.warning("host woke after ~%.0fs asleep: checking agents", slept)
        for worker in self.workers.values():
            await worker.probe()
        live = {w.session.owner for w in self.workers.values() if w.session and not w.session.ended}
        from agentbridge.supervisor.recovery import Evidence, recover_victims

        expired = [
            v
            for v in await self.ledger.victims(expired_before=self.ledger.clock())
            if v.lease_owner not in live and self.fleet.owns(v.agent)
        ]
        if expired:
            await recover_victims(self.ledger, expired, Evidence(), "lease expired while asleep")
        for worker in self.workers.values():
            worker.poke()
        try:
            self.host.pm.hook.host_woke(slept_seconds=slept)
        except Exception:
            log.exception("a host_woke hook failed")

    async def status_snapshot(self) -> dict[str, Any]:
        """Everything ``agentbridge status --json`` shows (supervisor/control_status.py)."""
        return await control_status.snapshot(self)

    # ------------------------------------------------------------------ run / stop

    async def main_loop(self) -> None:
        """Run until asked to stop."""
        await self.stop_event.wait()

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop channels, agents and tasks (bounded), then close the ledger and the lock."""
        for channel in reversed(self.started_channels):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.stop(), timeout)
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.stop(), timeout)
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout)
        if self.control is not None:
            await self.control.stop()
        if self.observer is not None:
            self.observer.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.ledger is not None:
            await self.fleet.leave()
            await self.ledger.close()
        if self.tmux is not None:
            with contextlib.suppress(Exception):
                await self.tmux.kill_server()
        self.lock.release()

    async def serve(self) -> None:
        """startup → main_loop → shutdown, with signal handling."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                print("agentbridge: stopping (again to force)", file=sys.stderr, flush=True)
                self.stop_event.set()
            else:
                os._exit(130)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            await self.startup()
            print(
                f"agentbridge: up — {len(self.workers)} agent(s): "
                f"{', '.join(self.workers)}; ledger {self.config.ledger.path}",
                file=sys.stderr,
                flush=True,
            )
            await self.main_loop()
        finally:
            await self.shutdown()


def run_supervisor(config: Config, open_console: bool = True) -> int:
    """Entry point of ``agentbridge up``; returns the exit code."""
    log_path = setup_logging()
    supervisor = Supervisor(config, console=open_console and config.console.enabled)
    try:
        asyncio.run(supervisor.serve())
    except SupervisorError as exc:
        print(f"agentbridge: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        log.error("supervisor failed", exc_info=True, extra=FILE_ONLY)
        print(f"agentbridge: {type(exc).__name__}: {exc} (details in {log_path})", file=sys.stderr)
        return 1
    return 0
