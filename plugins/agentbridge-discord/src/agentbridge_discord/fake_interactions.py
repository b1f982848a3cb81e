"""The fake Discord's interaction and file side: clicks, slash commands, callbacks, the CDN.

``click``/``slash`` dispatch INTERACTION_CREATE (types 3 and 2) as Discord does, with a fresh
interaction token; ``POST /interactions/{id}/{token}/callback`` is recorded (a type 7 also
edits the stored message, as Discord does); ``PUT /applications/{id}/commands`` records the
bulk overwrite; ``/attachments/…`` serves the files of user messages (the CDN).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from agentbridge_discord.fake_payloads import (
    BOT_ID,
    Callback,
    as_json,
    channel,
    member,
    public,
    user,
)


class FakeInteractions:
    """Mixed into ``FakeDiscord``; uses its history, ids, token and dispatch."""

    token: str
    history: dict[int, list[dict[str, Any]]]

    def _init_interactions(self) -> None:
        self.callbacks: list[Callback] = []
        self.commands: list[list[dict[str, Any]]] = []  # each bulk overwrite, in order
        self.files: dict[int, bytes] = {}  # attachment id → bytes served by the "CDN"
        self.cdn_status: dict[int, int] = {}  # attachment id → an error status to answer
        self.cdn_gets: list[int] = []  # attachment ids fetched
        self._tokens: dict[int, str] = {}

    def _interaction_routes(self, app: web.Application, api: str) -> None:
        app.router.add_put(f"{api}/applications/{{app}}/commands", self._put_commands)
        app.router.add_post(f"{api}/interactions/{{iid}}/{{token}}/callback", self._callback)
        app.router.add_get("/attachments/{cid}/{aid}/{name}", self._cdn)

    # ------------------------------------------------------------------ hooks FakeDiscord has

    def new_id(self) -> int:
        raise NotImplementedError

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def api_base_url(self) -> str:
        raise NotImplementedError

    def _auth(self, request: web.Request) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ driving

    def attachment(self, channel_id: int, name: str, data: bytes, **kw: Any) -> dict[str, Any]:
        """An attachment payload for ``message(attachments=[…])``; its bytes on the CDN."""
        aid = self.new_id()
        self.files[aid] = data
        return {
            "id": str(aid),
            "filename": name,
            "size": kw.get("size", len(data)),
            "url": f"{self.api_base_url}/attachments/{channel_id}/{aid}/{name}",
            "proxy_url": f"{self.api_base_url}/attachments/{channel_id}/{aid}/{name}",
            "content_type": kw.get("content_type", "application/octet-stream"),
        }

    async def _interaction(
        self,
        kind: int,
        channel_id: int,
        user_id: int,
        data: dict[str, Any],
        guild_id: int | None = None,
        parent_id: int | None = None,
        message: dict[str, Any] | None = None,
    ) -> int:
        iid = self.new_id()
        token = "itok-" + secrets.token_hex(8)
        self._tokens[iid] = token
        if message is not None:
            message["_interaction"] = iid  # a type 7 callback edits this one
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(BOT_ID),
            "type": kind,
            "token": token,
            "version": 1,
            "attachment_size_limit": 10 * 1024 * 1024,
            "channel_id": str(channel_id),
            "channel": channel(channel_id, guild_id, parent_id, user_id),
            "data": data,
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 1 if guild_id is None else 0,
        }
        if guild_id is None:
            payload["user"] = user(user_id)
        else:
            payload["guild_id"] = str(guild_id)
            payload["member"] = member(user_id)
        if message is not None:
            payload["message"] = public(message)
        await self.dispatch("INTERACTION_CREATE", payload)
        return iid

    async def click(
        self, channel_id: int, user_id: int, message_id: int, custom_id: str, **where: Any
    ) -> int:
        """A user clicks a button of a stored message; returns the interaction id."""
        [message] = [m for m in self.history[channel_id] if int(m["id"]) == message_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interaction(3, channel_id, user_id, data, message=message, **where)

    async def slash(
        self, channel_id: int, user_id: int, name: str, *values: str, **where: Any
    ) -> int:
        """A user runs ``/name values…`` (options named as registered); the interaction id."""
        registered = {c["name"]: c for c in (self.commands[-1] if self.commands else [])}
        names = [o["name"] for o in registered.get(name, {}).get("options", [])]
        options = [{"name": n, "type": 3, "value": v} for n, v in zip(names, values, strict=False)]
        data = {"id": str(self.new_id()), "name": name, "type": 1, "options": options}
        return await self._interaction(2, channel_id, user_id, data, **where)

    def buttons(self, sent_components: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """(label, custom_id) of every button in a message's components."""
        return [
            (str(b.get("label")), str(b.get("custom_id")))
            for row in sent_components
            for b in row.get("components", [])
            if b.get("type") == 2
        ]

    # ------------------------------------------------------------------ REST

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        self.commands.append(body)
        return as_json([{**c, "id": str(self.new_id()), "application_id": str(BOT_ID)}
                        for c in body])  # fmt: skip

    async def _callback(self, request: web.Request) -> web.Response:
        iid = int(request.match_info["iid"])
        if self._tokens.get(iid) != request.match_info["token"]:
            return as_json({"message": "Unknown interaction", "code": 10062}, status=404)
        if "multipart" in (request.content_type or ""):
            form = await request.post()
            body = json.loads(str(form["payload_json"]))
        else:
            body = await request.json()
        kind, data = int(body["type"]), body.get("data") or {}
        self.callbacks.append(Callback(iid, kind, data))
        if kind == 7:  # UPDATE_MESSAGE edits the message the component was on
            for messages in self.history.values():
                for message in messages:
                    if message.get("_interaction") == iid:
                        message.update({k: v for k, v in data.items() if k in ("content",
                                        "components")})  # fmt: skip
        return as_json({"interaction": {"id": str(iid), "type": 3}})

    async def _cdn(self, request: web.Request) -> web.Response:
        aid = int(request.match_info["aid"])
        self.cdn_gets.append(aid)
        status = self.cdn_status.get(aid)
        if status is not None or aid not in self.files:
            return web.Response(status=status or 404, text="no such file")
        return web.Response(body=self.files[aid], content_type="application/octet-stream")
