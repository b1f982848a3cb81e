"""The Slack channel: Socket Mode events in, ``chat.postMessage`` out.

The one rule that makes it lossless: a Socket Mode envelope is acked (which is how Slack
learns it was received) only after ``ctx.ingest`` returned, i.e. after the ledger commit. A
crash in between means Slack redelivers the envelope (``retry_attempt`` + 1), and ingest,
idempotent on ``"<channel>:<ts>"``, turns the second copy into a no-op.

Why not bolt's ``AsyncSocketModeHandler``: bolt acks an event before its listener runs
(unless ``process_before_response``), and its ack is the HTTP-style response of the whole
dispatch. The slack_sdk ``SocketModeClient`` bolt runs on lets us send the ack ourselves,
after the commit, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import replace
from typing import Any

from agentbridge.config import ConfigError
from agentbridge.ledger.sqlite import IdempotencyConflict
from agentbridge.ledger.store import IngestResult
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import (
    AttachmentTooLarge,
    ChannelContext,
    ChannelLimits,
    ErrorClass,
    Receipt,
    Reconciled,
)
from agentbridge.supervisor.routing import Unroutable
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from agentbridge_slack import catchup, files, interactive, outbound, receipts
from agentbridge_slack.cursor import Cursor
from agentbridge_slack.errors import api_code, classify, to_delivery_error
from agentbridge_slack.events_http import EventsServer
from agentbridge_slack.inbound import SlackMessage, parse_event, split_conversation, wanted
from agentbridge_slack.mrkdwn import MAX_MESSAGE_LENGTH
from agentbridge_slack.progress import ProgressEditing
from agentbridge_slack.settings import SlackSettings, load_tokens, parse_settings
from agentbridge_slack.uploads import FileSending

log = logging.getLogger(__name__)
#: the SDK logs request headers (the bearer token) and raw socket messages (senders' text) at
#: debug level: its clients get this logger, which never goes below INFO, even under ``-v``
SDK_LOG = logging.getLogger("agentbridge_slack.sdk")
SDK_LOG.setLevel(logging.INFO)

#: live channels, so the module-level ``host_woke`` hook can reach them
LIVE: weakref.WeakSet[SlackChannel] = weakref.WeakSet()


class SlackChannel(FileSending, ProgressEditing):
    """One Slack app. ``settings=None`` reads the table from ``ChannelContext.config``."""

    name = "slack"
    limits = ChannelLimits(
        max_message_length=MAX_MESSAGE_LENGTH,
        supports_formatting=True,
        max_file_bytes=SlackSettings.max_upload_bytes,
    )

    def __init__(
        self, settings: SlackSettings | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self._env = env
        self._ctx: ChannelContext | None = None
        self._web: AsyncWebClient | None = None  # outbound: no SDK retries (at most once)
        self._reader: AsyncWebClient | None = None  # catch-up and socket URLs: SDK retries ok
        self._socket: SocketModeClient | None = None
        self.events: EventsServer | None = None  # mode = "events"
        self._bot_token = ""  # for file downloads only; never logged
        self._cursor: Cursor | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._catching_up: asyncio.Task[None] | None = None
        self._again = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: set[str] = set()  # channel threads we answer in
        self._sent_at: dict[str, float] = {}
        self.bot_user: str | None = None
        self.team: str | None = None
        self.connections = 0
        self.refused = 0
        self.ingest_failures = 0
        self.caught_up = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Read the tokens, check the bot token with auth.test, connect the socket."""
        if self.settings is None:
            self.settings = parse_settings(dict(ctx.config))
        settings = self.settings
        self.limits = replace(self.limits, max_file_bytes=settings.max_upload_bytes)
        bot, app = load_tokens(settings, self._env)  # events mode: app = the signing secret
        self._bot_token = bot
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._cursor = Cursor(ctx.state_dir / "slack-cursor.json")
        timeout = int(max(settings.request_timeout, 1))
        self._web = AsyncWebClient(
            token=bot,
            base_url=settings.base_url,
            timeout=timeout,
            retry_handlers=[],
            logger=SDK_LOG,
        )
        self._web.timeout = settings.request_timeout  # type: ignore[assignment]
        self._reader = AsyncWebClient(
            token=bot, base_url=settings.base_url, timeout=timeout, logger=SDK_LOG
        )
        if not settings.allowed_users:
            log.warning("slack: allowed_users is empty: every sender will be refused")
        await self._check_token()
        LIVE.add(self)
        if settings.mode == "events":
            self.events = EventsServer(
                app, self._take_http, settings.listen_host, settings.listen_port,
                settings.events_path,
            )  # fmt: skip
            try:
                await self.events.start()
            except OSError as exc:
                raise ConfigError(
                    f"config: channels.slack: cannot listen on {settings.listen_host}:"
                    f"{settings.listen_port} ({exc.strerror})"
                ) from None
            if settings.catch_up:  # no hello in this mode: catch up once at start
                self._request_catch_up()
            return
        socket = SocketModeClient(
            app_token=app, web_client=self._reader, ping_interval=5, logger=SDK_LOG
        )
        socket.socket_mode_request_listeners.append(self._on_request)  # type: ignore[arg-type]
        socket.message_listeners.append(self._on_message)
        self._socket = socket
        self._spawn(self._connect())

    async def _check_token(self) -> None:
        assert self._web is not None
        try:
            me = await self._web.auth_test()
        except SlackApiError as exc:
            if api_code(exc) in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
                raise ConfigError(
                    f"config: channels.slack: the bot token was rejected ({api_code(exc)})"
                ) from None
            log.warning("slack: auth.test failed (will keep trying): %s", api_code(exc))
            return
        except Exception as exc:
            log.warning("slack: Web API unreachable (will keep trying): %s", type(exc).__name__)
            return
        self.bot_user = me.get("user_id")
        self.team = me.get("team_id")
        log.info("slack: connected as %s in %s", self.bot_user, self.team)

    async def _connect(self) -> None:
        assert self._socket is not None
        try:
            await self._socket.connect()  # type: ignore[no-untyped-call]
        except SlackApiError as exc:
            log.error("slack: the app-level token was refused (%s)", api_code(exc))

    async def stop(self) -> None:
        """Close the socket and cancel background work; safe to call twice."""
        LIVE.discard(self)
        socket, self._socket = self._socket, None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close()  # type: ignore[no-untyped-call]
        if self.events is not None:
            await self.events.stop()

    def status(self) -> dict[str, Any]:
        """A small snapshot for ``agentbridge status``."""
        return {
            "bot": self.bot_user,
            "team": self.team,
            "connections": self.connections,
            "refused": self.refused,
            "caught_up": self.caught_up,
        }

    def wake(self) -> None:
        """Called by the ``host_woke`` hook (any thread): reconnect now."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._reconnect)

    def _reconnect(self) -> None:
        if self._socket is not None:
            self._spawn(self._socket.connect_to_new_endpoint(force=True))
        elif self.events is not None and self.settings is not None and self.settings.catch_up:
            self._request_catch_up()  # events sent while asleep may have run out of retries

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ receiving

    async def _on_message(self, client: Any, message: dict[str, Any], raw: str | None) -> None:
        """Every new connection starts with ``hello``: catch up what we missed meanwhile."""
        if message.get("type") != "hello":
            return
        self.connections += 1
        if self.settings is not None and self.settings.catch_up:
            self._request_catch_up()

    def _request_catch_up(self) -> None:
        if self._catching_up is not None and not self._catching_up.done():
            self._again = True  # one more pass after this one: it may have started too early
            return
        self._catching_up = asyncio.get_running_loop().create_task(self._catch_up())
        self._tasks.add(self._catching_up)
        self._catching_up.add_done_callback(self._tasks.discard)

    async def _catch_up(self) -> None:
        while True:
            self._again = False
            try:
                assert self._reader is not None and self._cursor is not None
                async for msg in catchup.missed(self._reader, self._cursor, self.bot_user):
                    result = await self._handle(msg)
                    if result is not None and result.created:
                        self.caught_up += 1
            except Exception as exc:
                log.warning("slack: catch-up stopped early (next connect retries): %s", exc)
            if not self._again:
                return

    async def _on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        """Ingest, then ack; an envelope whose ingest failed is left unacked (Slack resends)."""
        payload = req.payload if isinstance(req.payload, dict) else {}
        try:
            click = await self._take(req.type, payload)
        except Exception:
            self.ingest_failures += 1
            log.exception("slack: envelope %s not stored; Slack will resend", req.envelope_id)
            return
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if click is not None:
            self._spawn(self._show_answer(click))

    async def _take_http(self, kind: str, payload: dict[str, Any]) -> None:
        """The Events API's way in: the 200 answer is the ack (``events_http``)."""
        try:
            click = await self._take(kind, payload)
        except Exception:
            self.ingest_failures += 1
            raise
        if click is not None:
            self._spawn(self._show_answer(click))

    async def _take(self, kind: str, payload: dict[str, Any]) -> interactive.Click | None:
        """Ingest one request: ``events_api`` (messages, mentions), ``interactive`` (a click
        on an answer button: returned when taken, so the question is edited after the ack),
        ``slash_commands``. Raises only when the ingest failed."""
        assert self.settings is not None
        msg: SlackMessage | None = None
        click: interactive.Click | None = None
        try:
            if kind == "events_api":
                event = payload.get("event")
                if isinstance(event, dict):
                    team, event_id = payload.get("team_id"), str(payload.get("event_id", ""))
                    msg = parse_event(event, self.bot_user, team, event_id)
            elif kind == "interactive":
                click = interactive.parse_click(payload)
                msg = click.message if click is not None else None
            elif kind == "slash_commands":
                msg = interactive.parse_slash(payload, self.settings.slash_command)
        except Exception as exc:  # a payload we cannot read: acked, or Slack resends it forever
            log.warning("slack: an unreadable %s request was dropped: %s", kind, type(exc).__name__)
            return None
        if msg is None or await self._handle(msg) is None:
            return None
        return click

    async def _show_answer(self, click: interactive.Click) -> None:
        """Edit the question: who chose what, buttons gone (best effort)."""
        if self._web is None or click.message.user is None:
            return
        blocks = interactive.answered_blocks(click.question_text, click.label, click.message.user)
        try:
            await self._web.chat_update(
                channel=click.message.channel,
                ts=click.question_ts,
                text=f"{click.question_text}\n{click.label} — <@{click.message.user}>",
                blocks=blocks,
            )
        except Exception as exc:
            log.warning("slack: the answered question was not updated: %s", type(exc).__name__)

    def _allowed(self, msg: SlackMessage) -> bool:
        settings = self.settings
        assert settings is not None
        if msg.user is None or msg.user not in settings.allowed_users:
            return False
        if settings.allowed_teams and msg.team not in settings.allowed_teams:
            return False
        return not settings.allowed_channels or msg.channel in settings.allowed_channels

    async def _handle(self, msg: SlackMessage) -> IngestResult | None:
        """Store one message (or refuse it); its ``IngestResult``, None when not ingested.
        Raises only when the ingest itself failed: then the envelope must come back."""
        assert self._ctx is not None and self.settings is not None and self._cursor is not None
        async with self._lock:
            result = await self._ingest(msg)
            if msg.kind == "message":  # clicks and commands are not in the history
                self._cursor.advance(msg.channel, msg.ts)
            return result

    async def _ingest(self, msg: SlackMessage) -> IngestResult | None:
        assert self._ctx is not None and self.settings is not None
        if not wanted(msg, self._threads):
            return None
        if not self._allowed(msg):
            self.refused += 1
            # ids only: a stranger's text never reaches a log line
            log.warning(
                "slack: refused a %s from user %s (team %s) in %s",
                msg.kind,
                msg.user,
                msg.team,
                msg.channel,
            )
            return None
        if not msg.text and not msg.files:
            return None
        conversation = msg.conversation(self.settings.reply_in_thread)
        if msg.kind == "action" and not await interactive.answers_here(
            self._ctx, conversation, msg.text
        ):
            log.warning("slack: dropped a click naming no request asked in %s", conversation)
            return None
        settings = self.settings
        try:
            async with files.fetch(
                msg.files,
                self._bot_token,
                settings.file_hosts,
                self._ctx.state_dir,
                min(settings.max_download_bytes, self._ctx.max_attachment_bytes),
                settings.request_timeout,
            ) as attachments:
                result = await self._ctx.ingest(
                    conversation,
                    msg.user or "",
                    msg.text,  # a file without text is still a message
                    key=msg.key,
                    meta=msg.meta,
                    attachments=attachments,
                )
        except (files.FileRefused, AttachmentTooLarge) as exc:  # sending again cannot help
            log.warning("slack: message %s refused: %s", msg.key, exc)
            self._spawn(self._notice(msg.channel, conversation, str(exc)))
            return None
        except IdempotencyConflict as exc:  # same key, other text: recorded, not resent
            log.warning("slack: %s", exc)
            return None
        except Unroutable as exc:
            log.warning("slack: message %s not routed: %s", msg.key, exc)
            return None
        if ":" in conversation:
            self._threads.add(conversation)
        return result

    async def _notice(self, channel: str, conversation: str, text: str) -> None:
        """Tell the sender why their message was not taken (best effort)."""
        if self._web is None:
            return
        try:
            await self._web.chat_postMessage(
                channel=channel, text=text, thread_ts=split_conversation(conversation)[1]
            )
        except Exception as exc:
            log.debug("slack: notice not sent: %s", type(exc).__name__)

    # ------------------------------------------------------------------ sending

    async def deliver(self, item: OutboxItem) -> str | None:
        """Post one relay chunk (mrkdwn, or a question with buttons) into its DM or thread;
        return its ts. (Files: ``deliver_file``.)"""
        if self._web is None or self.settings is None:
            raise to_delivery_error(ConnectionRefusedError("slack channel not started"))
        self._sent_at[f"{item.id}:{item.parts_sent}"] = time.time()
        try:
            first_ts = await outbound.post(self._web, item)
        except Exception as exc:
            error = to_delivery_error(exc)
            log.warning(
                "slack: reply %s to %s not delivered (%s): %s",
                item.id,
                item.conversation,
                error.error_class,
                error,
            )
            raise error from None
        if split_conversation(item.conversation)[1] is not None:
            self._threads.add(item.conversation)
        return first_ts

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Slack's rules (see ``errors.classify``); None for errors that are not ours."""
        return classify(exc)

    async def reconcile(self, item: OutboxItem) -> Reconciled:
        """Look for our own message with this text in the DM or thread since the attempt."""
        if self._reader is None:
            raise RuntimeError("slack channel not started")
        channel, thread = split_conversation(item.conversation)
        since = self._sent_at.get(f"{item.id}:{item.parts_sent}", item.updated_at) - 5
        text = outbound.posted_text(item)
        found = await catchup.find_own(self._reader, channel, thread, since, text, self.bot_user)
        return Reconciled(landed=found is not None, platform_message_id=found)

    async def receipt(self, receipt: Receipt) -> None:
        """Reactions on the sender's message; best effort, never raises."""
        await receipts.send(self._web, receipt)
