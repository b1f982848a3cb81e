"""The HTTP API channel: scripts and other agents post messages and read replies over HTTP.

Enabled by a ``[channels.http]`` table. ``POST /v1/messages`` answers 202 only after the
ledger commit, so a 202 is a promise the message survives a crash; anything else means "not
received, send again" (with the same ``Idempotency-Key`` that is always safe). Replies are not
pushed anywhere: the caller reads them with ``GET /v1/messages/{id}``, optionally long-polling
with ``?wait=SECONDS``, which wakes on the ledger's change feed instead of polling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentbridge.channels.http_auth import (
    Authenticator,
    Credential,
    HttpSettings,
    Refused,
    host_allowed,
    load_credentials,
    parse_settings,
)
from agentbridge.config import Config
from agentbridge.kinds import ChangeKind
from agentbridge.ledger.store import IdempotencyConflict, NotFound
from agentbridge.models import Message, OutboxItem
from agentbridge.plugin.hookspecs import hookimpl
from agentbridge.plugin.protocols import Channel, ChannelContext, ChannelLimits, ErrorClass, Receipt
from agentbridge.sanitize import clean_text
from agentbridge.states import TERMINAL, MessageState
from agentbridge.supervisor.routing import Unroutable

log = logging.getLogger(__name__)

#: states after which a message's row no longer changes on its own (a human may requeue)
FINAL_STATES = TERMINAL | {MessageState.QUARANTINED}
_BODY_FIELDS = {"text", "conversation", "sender", "key"}
_SSE_KEEPALIVE = 15.0
#: where the guard leaves the authenticated caller's ``Credential`` on the request
_CREDENTIAL = web.RequestKey("credential", Credential)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    """Every refusal is JSON with one readable line, so a script can print it as is."""
    return web.json_response({"error": message}, status=status)


def message_json(msg: Message) -> dict[str, Any]:
    """The public shape of a message on this API."""
    return {
        "id": msg.id,
        "state": str(msg.state),
        "final": msg.state in FINAL_STATES,
        "conversation": msg.conversation,
        "reply": msg.reply,
        "attempt": msg.attempt,
        "reason": msg.reason,
    }


class HttpApiChannel:
    """An aiohttp server on loopback; ``port`` is the bound port once started."""

    name = "http"
    singleton = False  #: fleet: every node serves its own port
    #: replies are read whole by GET: nothing to chunk for a platform
    limits = ChannelLimits(max_message_length=1_000_000)

    def __init__(
        self,
        settings: HttpSettings | dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = (
            settings if isinstance(settings, HttpSettings) else parse_settings(settings or {})
        )
        self.port: int | None = None
        self._clock = clock
        self._ctx: ChannelContext | None = None
        self._auth: Authenticator | None = None
        self._runner: web.AppRunner | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._closing = asyncio.Event()

    @property
    def url(self) -> str | None:
        """Where the API listens once started (the supervisor prints it at startup)."""
        if self.port is None:
            return None
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1/messages"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: ChannelContext) -> None:
        """Load credentials, subscribe to the ledger's changes, then listen."""
        if ctx.ledger is None:
            raise RuntimeError("the http channel needs the bridge's ledger (replies, nonces)")
        self._ctx = ctx
        self._closing = asyncio.Event()
        tokens, keys = load_credentials(self.settings, ctx.state_dir)
        ledger = ctx.ledger

        async def claim(nonce: str, until: float) -> bool:
            return bool(await ledger.claim_nonce(self.name, nonce, until))

        self._auth = Authenticator(tokens, keys, claim, self._clock)
        self._unsubscribe = ledger.on_change(self._changed)
        app = web.Application(
            client_max_size=self.settings.max_body_bytes, middlewares=[self._guard]
        )
        app.router.add_post("/v1/messages", self._post)
        app.router.add_get("/v1/messages/{id}", self._get)
        app.router.add_get("/v1/messages/{id}/events", self._events)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("http api listening on %s:%s", self.settings.host, self.port)
        if self.settings.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "http api listens on %s, beyond this machine: anyone holding the token can"
                " talk to your agents",
                self.settings.host,
            )

    async def stop(self) -> None:
        """Wake every long-poll (it answers with the current state), then close the server."""
        self._closing.set()
        for events in self._waiters.values():
            for event in events:
                event.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.port = None

    async def deliver(self, item: OutboxItem) -> str | None:
        """Nothing to push: the reply is in the ledger, where ``GET`` reads it."""
        return f"http-{item.id}"

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """``deliver`` cannot fail: no platform behind it."""
        return None

    async def receipt(self, receipt: Receipt) -> None:
        """Callers see progress through ``GET``'s ``state``; nothing to push."""

    # ------------------------------------------------------------------ plumbing

    def _changed(self, kind: ChangeKind, ident: int) -> None:
        """Ledger listener: wake the long-polls and streams watching this message."""
        if kind == ChangeKind.MESSAGE:
            for event in self._waiters.get(ident, ()):
                event.set()

    @contextlib.contextmanager
    def _watch(self, message_id: int) -> Any:
        event = asyncio.Event()
        self._waiters.setdefault(message_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._waiters.get(message_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._waiters[message_id]

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Host check, size limit and authentication, before any handler runs."""
        if not host_allowed(request.headers.get("Host"), self.settings.allowed_hosts):
            return _error(403, "Host header not allowed (add it to channels.http.allowed_hosts)")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body over {self.settings.max_body_bytes} bytes")
        assert self._auth is not None
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            request[_CREDENTIAL] = await self._auth.check(
                headers, request.method, request.path_qs, body
            )
        except Refused as refused:
            log.warning("http api: refused %s %s: %s", request.method, request.path, refused)
            return _error(401, str(refused))
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)

    async def _message(self, request: web.Request) -> Message:
        """The message named in the URL; only this channel's messages are visible here."""
        assert self._ctx is not None and self._ctx.ledger is not None
        try:
            message_id = int(request.match_info["id"])
            msg: Message = await self._ctx.ledger.get(message_id)
        except (ValueError, NotFound):
            raise web.HTTPNotFound(reason="no such message") from None
        if msg.channel != self.name:
            raise web.HTTPNotFound(reason="no such message")
        return msg

    # ------------------------------------------------------------------ handlers

    async def _post(self, request: web.Request) -> web.Response:
        assert self._ctx is not None
        body = await request.read()
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _error(400, f"body is not valid UTF-8 (byte {exc.start}): send UTF-8 JSON")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        if not isinstance(data, dict):
            return _error(400, "body must be a JSON object with a 'text' field")
        unknown = sorted(set(data) - _BODY_FIELDS)
        if unknown:
            return _error(
                400, f"unknown field {unknown[0]!r} (allowed: text, conversation, sender, key)"
            )
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "'text' must be a non-empty string")
        text = clean_text(text)  # a "\ud800" escape is valid JSON: it becomes U+FFFD
        cred: Credential = request[_CREDENTIAL]
        fields = {"conversation": "default", "sender": cred.default_sender, "key": None}
        for field, default in fields.items():
            value = default if data.get(field) is None else data[field]  # null: the default
            if value is not None and (not isinstance(value, str) or not value):
                return _error(400, f"'{field}' must be a non-empty string")
            fields[field] = None if value is None else clean_text(value)
        header_key = request.headers.get("Idempotency-Key")
        if header_key is not None:  # aiohttp keeps non-UTF-8 header bytes as surrogates
            header_key = clean_text(header_key)
        if header_key is not None and fields["key"] is not None and header_key != fields["key"]:
            return _error(400, "Idempotency-Key header and body 'key' differ")
        key = header_key or fields["key"]
        sender, conversation = fields["sender"], fields["conversation"]
        assert sender is not None and conversation is not None
        if not cred.allows(sender):
            # the sender is the identity an agent sees: a credential speaks only for its own
            log.warning(
                "http api: refused sender %r for %s (allowed: %s)",
                sender,
                cred.label,
                ", ".join(cred.senders),
            )
            return _error(
                403,
                f"sender {sender!r} is not allowed for this credential"
                f" (allowed: {', '.join(cred.senders)}; see channels.http.tokens)",
            )
        try:
            result = await self._ctx.ingest(
                conversation=conversation,
                sender=sender,
                text=text,
                key=key,
                meta={"via": "http", "credential": cred.label},
            )
        except IdempotencyConflict as exc:
            return _error(409, str(exc))
        except Unroutable as exc:  # a refusal the caller must see, not a "retry"
            return _error(422, str(exc))
        except Exception:
            log.exception("http api: ingest failed")
            return _error(503, "the message could not be stored and was NOT received; retry")
        msg = result.message
        return web.json_response(
            {"id": msg.id, "state": str(msg.state), "created": result.created}, status=202
        )

    async def _get(self, request: web.Request) -> web.Response:
        msg = await self._message(request)
        raw_wait = request.query.get("wait")
        if raw_wait is None or msg.state in FINAL_STATES:
            return web.json_response(message_json(msg))
        try:
            wait = float(raw_wait)
        except ValueError:
            return _error(400, "'wait' must be a number of seconds")
        wait = min(max(wait, 0.0), self.settings.max_wait)
        assert self._ctx is not None and self._ctx.ledger is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with self._watch(msg.id) as event:
            while True:
                event.clear()  # before the read: a change after it will set the event again
                msg = await self._ctx.ledger.get(msg.id)
                remaining = deadline - loop.time()
                if msg.state in FINAL_STATES or remaining <= 0 or self._closing.is_set():
                    return web.json_response(message_json(msg))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``state`` event per change, closed after a final state."""
        msg = await self._message(request)
        assert self._ctx is not None and self._ctx.ledger is not None
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        last: tuple[str, int, str | None] | None = None
        with self._watch(msg.id) as event:
            while True:
                event.clear()
                msg = await self._ctx.ledger.get(msg.id)
                seen = (str(msg.state), msg.attempt, msg.reply)
                if seen != last:
                    last = seen
                    data = json.dumps(message_json(msg))
                    await response.write(f"event: state\ndata: {data}\n\n".encode())
                if msg.state in FINAL_STATES or self._closing.is_set():
                    break
                try:
                    await asyncio.wait_for(event.wait(), _SSE_KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
        await response.write_eof()
        return response


@hookimpl
def register_channels(register: Callable[[Channel], None], config: Config) -> None:
    """Only when ``[channels.http]`` exists: an open port is something a user asks for."""
    table = config.channels.get("http")
    if table is not None:
        register(HttpApiChannel(table))
