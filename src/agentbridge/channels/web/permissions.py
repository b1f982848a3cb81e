"""The console's pending permission requests, and its Allow / Deny / Always buttons.

The dashboard lists every pending request (``/api/status`` carries them, so the page's one
snapshot shows them) with its tool, summary, short id and the conversation that was asked.
The console is the bridge owner's (token or cookie, Origin checked on writes: ``security``),
so it may answer any of them, as ``agentbridge send`` may: ``POST /api/permissions/{id}``
hands ``"yes|no|always <id>"`` to the bridge's relay (``ctx.extras[ANSWERER]``, the
supervisor's ``PermissionRelay.answer``) for the request's own channel and conversation,
as sender ``console``. So first-answer-wins and "already answered by X" hold exactly as in
the chat, and the chat sees the same notes. Without a relay (a console run on its own) the
list shows and answering is refused (409).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from agentbridge.delivery.actions import asked_during
from agentbridge.ledger.store import ChannelLedger, NotFound, PermissionState
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.supervisor.permission_send import ANSWERER

SENDER = "console"
WORDS = frozenset({"yes", "no", "always"})
_SHORT_ID = re.compile(r"[a-z0-9]{5}")


async def pending_view(ledger: ChannelLedger) -> list[dict[str, Any]]:
    """The pending requests, oldest first, with the conversation each was asked in."""
    out: list[dict[str, Any]] = []
    for req in await ledger.list_permissions(state=PermissionState.PENDING, limit=200):
        view = {k: v for k, v in req.to_json().items() if k not in ("answered_by", "answered_at")}
        if req.message_id is not None:
            try:
                message = await ledger.get(req.message_id)
            except NotFound:
                continue
            view.update(channel=message.channel, conversation=message.conversation)
        out.append(view)
    return out


def routes(ctx: ChannelContext) -> list[web.RouteDef]:
    """``GET /api/permissions`` and ``POST /api/permissions/{short_id}``."""
    assert ctx.ledger is not None
    ledger = ctx.ledger

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(
            {"pending": await pending_view(ledger), "can_answer": ANSWERER in ctx.extras}
        )

    async def answer(request: web.Request) -> web.Response:
        short_id = request.match_info["short_id"]
        if request.content_type != "application/json":
            return web.json_response({"error": "send JSON"}, status=415)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        word = body.get("answer") if isinstance(body, dict) else None
        if not isinstance(word, str) or word not in WORDS or not _SHORT_ID.fullmatch(short_id):
            # a list or an object is unhashable: checked first, it is a 400, never a 500
            return web.json_response({"error": "answer must be yes, no or always"}, status=400)
        found = await asked_during(ledger, short_id)  # its message pruned: 404, not a 500
        if found is None:
            return web.json_response({"error": "no such permission request"}, status=404)
        relay = ctx.extras.get(ANSWERER)
        if relay is None:
            return web.json_response({"error": "no relay: answer it in its chat"}, status=409)
        message = found[1]
        text = f"{word} {short_id}"
        answered = await relay(message.channel, message.conversation, SENDER, text)
        if answered is None:
            return web.json_response({"error": "the relay did not take it"}, status=409)
        row = answered.request
        view = {**row.to_json(), "won": answered.won}
        if not answered.won:
            error = f"already answered by {row.answered_by} ({row.state})"
            return web.json_response({"error": error, "permission": view}, status=409)
        return web.json_response({"permission": view})

    return [
        web.get("/api/permissions", listing),
        web.post(r"/api/permissions/{short_id}", answer),
    ]
