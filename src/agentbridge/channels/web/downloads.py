"""``GET /api/files/{outbox id}``: a file the agent sent to this console, as a download.

Behind the console's guard like every route (Host allowlist, token or cookie). Only an
outbox row of this channel that carries a file (``delivery/attachments.py``) and was
``sent`` is served, and the file is read again from where the agent wrote it, with the
relay's own checks (``delivery/outfiles.py``: under the agent's cwd or the state dir's
``outfiles``, symlinks resolved, a regular file, within ``[console] max_file_bytes``).
Always ``application/octet-stream`` as an attachment: an agent's HTML or SVG must never
render inside the console's origin, where it could act with the user's cookie.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from agentbridge.delivery.attachments import file_ref
from agentbridge.delivery.outfiles import FileRefused, FileRoots, read_checked
from agentbridge.ledger.store import ChannelLedger, NotFound
from agentbridge.states import OutboxState

#: how a refusal answers: gone → 410, anything else the console will not serve → 403
_STATUS = {"gone": 410, "too_big": 413}


def download_url(outbox_id: int) -> str:
    """Where the page links a file (relative: the page is served by the same console)."""
    return f"/api/files/{outbox_id}"


class Downloads:
    """The route handler over one console's ledger, channel name and file roots."""

    def __init__(self, ledger: ChannelLedger, channel: str, roots: FileRoots, limit: int):
        self.ledger = ledger
        self.channel = channel
        self.roots = roots
        self.limit = limit

    def routes(self) -> list[web.RouteDef]:
        """The one route."""
        return [web.get(r"/api/files/{id:\d+}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The file's bytes, or a JSON error saying why not."""
        try:
            item = await self.ledger.get_reply(int(request.match_info["id"]))
        except NotFound:
            item = None
        ref = file_ref(item) if item is not None else None
        if item is None or ref is None or item.channel != self.channel:
            return web.json_response({"error": "no such file"}, status=404)
        if item.state != OutboxState.SENT:
            return web.json_response({"error": f"the file was not sent ({item.state})"}, status=404)
        roots = await self.roots.for_item(item, self.ledger)
        try:
            file = await asyncio.to_thread(
                read_checked, ref, roots, self.limit, self.channel, self.roots.state_dir
            )
        except FileRefused as refused:
            status = _STATUS.get(refused.kind, 403)
            return web.json_response({"error": str(refused)}, status=status)
        disposition = f"attachment; filename*=UTF-8''{quote(file.name, safe='')}"
        return web.Response(
            body=file.data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
        )
