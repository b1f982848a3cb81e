"""The console's JSON API: read the ledger and status, send a message, act on quarantine.

Every write goes through the bridge's own entry points: ``ctx.ingest`` (routing, commit, the
ingress ack) for a message, ``ledger.requeue_quarantined``/``ledger.drop`` for a human decision.
The page's snapshot calls return a ``cursor`` (the newest ledger event id, read *before* the
snapshot) to open the live stream from, so nothing between snapshot and stream is lost;
events replayed over a snapshot are harmless (the page keys everything by id).
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from aiohttp import web

from agentbridge.channels.web.permissions import pending_view
from agentbridge.channels.web.sse import Notifier
from agentbridge.channels.web.uploads import MAX_TEXT, read_form
from agentbridge.channels.web.views import event_view, message_view, outbox_view
from agentbridge.ledger.store import ChannelLedger
from agentbridge.plugin.protocols import Attachment, AttachmentTooLarge, ChannelContext
from agentbridge.sanitize import clean_text
from agentbridge.supervisor.permission_send import ANSWERER

_NAME = re.compile(r"^[A-Za-z0-9._:@+-]{1,80}$")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise web.HTTPBadRequest(
            text=f'{{"error": "{what} must match [A-Za-z0-9._:@+-]{{1,80}}"}}',
            content_type="application/json",
        )
    return value


def _accepts_agent(ingest: Any) -> bool:
    """Does the bridge's ``ingest`` let a channel pick the agent (``agent=``/``**kwargs``)?"""
    try:
        params = inspect.signature(ingest).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "agent" or p.kind == p.VAR_KEYWORD for p in params)


class ConsoleApi:
    """Route handlers over one ``ChannelContext``."""

    def __init__(self, ctx: ChannelContext, notifier: Notifier, channel: str) -> None:
        self.ctx = ctx
        assert ctx.ledger is not None, "the console needs ctx.ledger"
        self.ledger: ChannelLedger = ctx.ledger
        self.notifier = notifier
        self.channel = channel
        self.ingest_takes_agent = _accepts_agent(ctx.ingest)
        self._agents: frozenset[str] = frozenset()

    def routes(self) -> list[web.RouteDef]:
        """The API's routes (the SSE stream is added by the channel)."""
        return [
            web.get("/api/status", self.status),
            web.get("/api/messages", self.messages),
            web.get(r"/api/messages/{id:\d+}", self.message),
            web.post("/api/send", self.send),
            web.post(r"/api/messages/{id:\d+}/requeue", self.requeue),
            web.post(r"/api/messages/{id:\d+}/drop", self.drop),
        ]

    async def _known_agent(self, name: str) -> bool:
        """Is ``name`` an agent the bridge runs? (An old tab must not queue for a removed one.)

        The set is re-read from the status snapshot only when a name is not in it.
        """
        if name in self._agents or self.ctx.status is None:
            return True
        snapshot = await self.ctx.status()
        self._agents = frozenset(snapshot.get("agents", {}))
        return name in self._agents

    async def _view(self, message: Any) -> dict[str, Any]:
        return message_view(message, await self.ledger.list_replies(message_id=message.id))

    # ------------------------------------------------------------------ reads

    async def status(self, request: web.Request) -> web.Response:
        """Dashboard snapshot: live status, in-flight and quarantined messages, outbox rows
        needing attention, and the server's clock (lease expiries are shown against it)."""
        cursor = await self.notifier.current_head()
        if self.ctx.status is not None:
            snapshot = await self.ctx.status()
        else:
            snapshot = await self.ledger.stats()
        quarantined = await self.ledger.list_messages(state="quarantined", limit=200)
        in_flight = []
        for state in ("claimed", "submitted", "accepted"):
            in_flight += await self.ledger.list_messages(state=state, limit=100)
        in_flight.sort(key=lambda message: message.id)
        attention = []
        for state in ("unknown", "failed", "pending", "sending"):
            attention += await self.ledger.list_replies(state=state, limit=100)
        attention.sort(key=lambda item: item.id)
        return web.json_response(
            {
                "cursor": cursor,
                "status": snapshot,
                "quarantined": [await self._view(m) for m in quarantined],
                "in_flight": [await self._view(m) for m in in_flight],
                "server_time": self.ledger.clock(),
                "outbox_attention": [outbox_view(i) for i in attention],
                "permissions": await pending_view(self.ledger),
                "can_answer_permissions": ANSWERER in self.ctx.extras,
                "channel": self.channel,
            },
            dumps=_dumps,
        )

    async def messages(self, request: web.Request) -> web.Response:
        """One conversation's recent messages with their events (the chat page snapshot)."""
        query = request.query
        agent = _name(query["agent"], "agent") if query.get("agent") else None
        conversation = (
            _name(query["conversation"], "conversation") if query.get("conversation") else None
        )
        try:
            limit = max(1, min(int(query.get("limit", "50")), 500))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a number") from None
        cursor = await self.notifier.current_head()
        found = await self.ledger.list_messages(
            agent=agent,
            conversation=conversation,
            channel=self.channel if conversation else None,
            limit=limit,
        )
        out = []
        for message in found:
            view = await self._view(message)
            view["events"] = [event_view(e) for e in await self.ledger.events_for(message.id)]
            out.append(view)
        return web.json_response({"cursor": cursor, "messages": out}, dumps=_dumps)

    async def message(self, request: web.Request) -> web.Response:
        """One message with its whole audit trail."""
        from agentbridge.ledger.store import NotFound

        try:
            found = await self.ledger.get(int(request.match_info["id"]))
        except NotFound:
            return web.json_response({"error": "no such message"}, status=404)
        view = await self._view(found)
        view["events"] = [event_view(e) for e in await self.ledger.events_for(found.id)]
        return web.json_response(view, dumps=_dumps)

    # ------------------------------------------------------------------ writes

    async def send(self, request: web.Request) -> web.Response:
        """Ingest one message; the client's uuid key makes a retried POST the same message."""
        from agentbridge.ledger.store import IdempotencyConflict

        files: list[Attachment] = []
        if request.content_type == "multipart/form-data":  # the chat form with files
            try:
                body, files = await read_form(request)
            except AttachmentTooLarge as exc:
                return web.json_response({"error": str(exc)}, status=413)
            except ValueError as exc:
                return web.json_response({"error": f"bad form: {exc}"}, status=400)
        elif request.content_type != "application/json":
            return web.json_response({"error": "send JSON"}, status=415)
        else:
            try:
                body = json.loads((await request.read()).decode("utf-8"))
            except UnicodeDecodeError as exc:
                return web.json_response(
                    {"error": f"body is not valid UTF-8 (byte {exc.start})"}, status=400
                )
            except ValueError:
                return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected an object"}, status=400)
        text = body.get("text")
        if not isinstance(text, str) or not (text.strip() or files) or len(text) > MAX_TEXT:
            return web.json_response(
                {"error": f"text must be 1..{MAX_TEXT} characters"}, status=400
            )
        text = clean_text(text)  # a lone "\ud800" escape becomes U+FFFD, never a 500
        key = _name(body.get("key"), "key")
        conversation = _name(body.get("conversation") or "web", "conversation")
        agent = _name(body["agent"], "agent") if body.get("agent") else None
        kwargs: dict[str, Any] = {"key": key, "meta": {"via": "console"}}
        if files:
            kwargs["attachments"] = files
        if agent is not None:
            if not await self._known_agent(agent):
                return web.json_response({"error": f"no agent named {agent!r}"}, status=404)
            kwargs["meta"]["agent"] = agent
            if self.ingest_takes_agent:
                kwargs["agent"] = agent
        from agentbridge.supervisor.routing import Unroutable

        try:
            result = await self.ctx.ingest(conversation, "web", text, **kwargs)
        except IdempotencyConflict:
            return web.json_response(
                {"error": "this key was already used for another text"}, status=409
            )
        except Unroutable as exc:
            return web.json_response({"error": str(exc)}, status=422)
        except AttachmentTooLarge as exc:
            return web.json_response({"error": str(exc)}, status=413)
        view = await self._view(result.message)
        view["events"] = [event_view(e) for e in await self.ledger.events_for(result.message.id)]
        return web.json_response({"created": result.created, "message": view}, dumps=_dumps)

    async def requeue(self, request: web.Request) -> web.Response:
        """A human retries a quarantined message (attempts start over)."""
        return await self._human(request, "requeue")

    async def drop(self, request: web.Request) -> web.Response:
        """A human gives up on a queued or quarantined message."""
        return await self._human(request, "drop")

    async def _human(self, request: web.Request, action: str) -> web.Response:
        from agentbridge.ledger.store import IllegalTransition, NotFound

        message_id = int(request.match_info["id"])
        try:
            if action == "requeue":
                moved = await self.ledger.requeue_quarantined(message_id, actor="console")
            else:
                moved = await self.ledger.drop(
                    message_id, reason="dropped from the console", actor="console"
                )
        except NotFound:
            return web.json_response({"error": "no such message"}, status=404)
        except IllegalTransition as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"message": await self._view(moved)}, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str)
