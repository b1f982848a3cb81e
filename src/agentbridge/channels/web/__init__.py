"""The built-in web console: chat with an agent, live receipts, and a dashboard.

``WebChannel`` is the channel; ``plugin`` registers it when ``[console] enabled`` (the default).

How the bridge runs it: ``await channel.start(ctx)`` with ``ctx.ledger`` (required),
``ctx.ingest`` (routed; an ``agent=`` keyword is used when it accepts one, so the chat page of
agent X reaches X) and ``ctx.status`` (the ``status --json`` snapshot; without it the dashboard
falls back to ``ledger.stats()``); then print ``channel.url`` (it carries the access token).
Replies: ``deliver(item)`` returns ``web-<outbox id>``; ``receipt()`` wakes the live streams.

Routes (all behind the guard in ``security``: Host allowlist, token/cookie, Origin on writes):

==========================================  ================================================
``GET /?token=…``                           trade the token for the cookie, 303 to ``/``
``GET /``, ``GET /static/{file}``           the page (vanilla JS modules, no CDN)
``GET /api/status``                         status snapshot, in-flight, quarantine, outbox
``GET /api/messages?agent&conversation``    a conversation's messages with their events
``GET /api/messages/{id}``                  one message and its audit trail
``GET /api/events?agent&conversation``      SSE: ledger events (id = ledger event id)
``POST /api/send``                          ``{agent, conversation, text, key}`` → ingest
``POST /api/messages/{id}/requeue|drop``    a human decision on a quarantined message
==========================================  ================================================
"""

from __future__ import annotations

from agentbridge.channels.web.channel import ConsoleStartError, WebChannel

__all__ = ["ConsoleStartError", "WebChannel"]
