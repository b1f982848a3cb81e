"""The console's pending permission requests: listed with tool, call and short id, answered with
Allow / Always / Deny through the real relay (first answer wins, "already answered by X"),
behind the console's credentials and Origin check — over HTTP and in real Chromium."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentbridge.channels.web import WebChannel
from agentbridge.channels.web.testing import CHROMIUM_ARGS, running_console
from agentbridge.config import parse_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.ledger.store import PermissionRequest, PermissionState
from agentbridge.supervisor.permission_send import ANSWERER
from agentbridge.supervisor.permissions import PermissionRelay
from agentbridge.testing import async_wait_until

CHROMIUM = "/usr/bin/chromium"
CHAT = ("telegram", "4242")  # asked in another channel's conversation


@dataclass
class Rig:
    ledger: Ledger
    relay: PermissionRelay
    console: WebChannel
    hooks: list[asyncio.Task[dict[str, Any]]]

    async def ask(self, command: str) -> tuple[PermissionRequest, asyncio.Task[dict[str, Any]]]:
        """A message in flight whose agent asks, as the hook's ``permission`` request does."""
        agent = f"demo{len(self.hooks)}"  # one message in flight per agent
        msg = (await self.ledger.ingest(*CHAT, "alice", f"do {command}", agent=agent)).message
        assert await self.ledger.claim_next(agent, "host", 60) is not None
        event = {"tool_name": "Bash", "tool_input": {"command": command}, "can_always": True}
        hook = asyncio.create_task(self.relay.handle({"agent": agent, "event": event}))
        self.hooks.append(hook)

        async def opened() -> list[PermissionRequest]:
            found = await self.ledger.list_permissions(message_id=msg.id)
            return found

        (req,) = await async_wait_until(opened, what="the request opened")
        return req, hook


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = parse_config(
        {
            "state_dir": str(tmp_path / "s"),
            "ledger": {"path": str(tmp_path / "ledger.db")},
            "agents": {"demo": {"runtime": "demo"}},
            "permissions": {"timeout": 60},
        }
    )
    ledger = await Ledger.open(tmp_path / "ledger.db")
    relay = PermissionRelay(ledger, config)
    extras = {ANSWERER: relay.answer}
    async with running_console(ledger, tmp_path / "state", extras=extras) as console:
        rig = Rig(ledger, relay, console, [])
        try:
            yield rig
        finally:
            for hook in rig.hooks:
                hook.cancel()
    await ledger.close()


@pytest.fixture
async def http(rig: Rig) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {rig.console.token}"}
    async with aiohttp.ClientSession(rig.console.base_url, headers=headers) as session:
        yield session


async def post(http: aiohttp.ClientSession, short_id: str, **body: Any) -> tuple[int, Any]:
    async with http.post(f"/api/permissions/{short_id}", json=body) as response:
        return response.status, await response.json()


async def test_pending_requests_are_listed_and_answered_once(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    req, hook = await rig.ask("rm -rf build")
    async with http.get("/api/status") as response:
        status = await response.json()
    (shown,) = status["permissions"]
    assert status["can_answer_permissions"] is True
    assert (shown["short_id"], shown["tool"], shown["summary"]) == (
        req.short_id,
        "Bash",
        "rm -rf build",
    )
    assert (shown["channel"], shown["conversation"], shown["can_always"]) == (*CHAT, True)
    assert await post(http, req.short_id, answer="maybe") == (
        400,
        {"error": "answer must be yes, no or always"},
    )
    assert (await post(http, "zzzzz", answer="yes"))[0] == 404
    code, body = await post(http, req.short_id, answer="always")
    assert code == 200 and body["permission"]["state"] == "allowed" and body["permission"]["always"]
    assert (await asyncio.wait_for(hook, 10))["decision"] == "allow"
    code, body = await post(http, req.short_id, answer="no")
    assert (code, body["error"]) == (409, "already answered by console (allowed)")
    (row,) = await rig.ledger.list_permissions()
    assert (row.state, row.answered_by, row.always) == (PermissionState.ALLOWED, "console", True)
    notes = [r.text for r in await rig.ledger.list_replies()]
    assert f"Permission {req.short_id}: allowed for this session (by console)" in notes
    async with http.get("/api/permissions") as response:
        assert (await response.json())["pending"] == []


async def test_a_request_whose_message_was_pruned_is_a_404_not_a_500(
    rig: Rig, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    msg = (await rig.ledger.ingest(*CHAT, "alice", "old work", agent="demo")).message
    req = await rig.ledger.open_permission(msg.id, "demo", "Bash", "ls", time.time() + 60)
    await rig.ledger.drop(msg.id)  # finished (failed), so retention may take it
    await rig.ledger.ingest(*CHAT, "alice", "newer", agent="demo")  # the newest row stays
    later = await Ledger.open(tmp_path / "ledger.db", clock=lambda: time.time() + 2 * 86400)
    try:
        assert (await later.prune(86400))[0] == 1
    finally:
        await later.close()
    assert await post(http, req.short_id, answer="yes") == (
        404,
        {"error": "no such permission request"},
    )


async def test_answering_needs_credentials_our_origin_and_json(rig: Rig) -> None:
    req, _ = await rig.ask("make deploy")
    url = f"{rig.console.base_url}api/permissions/{req.short_id}"
    token = {"Authorization": f"Bearer {rig.console.token}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(url, json={"answer": "yes"}) as response:
            assert response.status == 401
        evil = {**token, "Origin": "http://evil.example"}
        async with http.post(url, json={"answer": "yes"}, headers=evil) as response:
            assert response.status == 403
        form = {**token, "Origin": f"http://127.0.0.1:{rig.console.port}"}
        async with http.post(url, data={"answer": "yes"}, headers=form) as response:
            assert response.status == 415
    (row,) = await rig.ledger.list_permissions()
    assert row.state == PermissionState.PENDING  # none of them answered it


browser_only = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium is not installed (scripts/setup --test)"
)


@browser_only
@pytest.mark.browser
async def test_browser_buttons_answer_and_a_late_click_is_told_who_was_first(rig: Rig) -> None:
    from playwright.async_api import async_playwright, expect

    first, first_hook = await rig.ask("rm -rf build")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await (await browser.new_context()).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(rig.console.url)
        row = page.locator(f'#permissions tr[data-short-id="{first.short_id}"]')
        await expect(row).to_contain_text("rm -rf build")
        await expect(row).to_contain_text("telegram · 4242")
        await expect(row.locator("button")).to_have_text(["Allow", "Always", "Deny"])
        await row.locator('button[data-answer="no"]').click()
        assert (await asyncio.wait_for(first_hook, 10))["decision"] == "deny"
        await expect(page.locator("#permissions-note")).to_have_text(
            f"Permission {first.short_id}: denied (by console)"
        )
        await expect(row).to_have_count(0)
        # a request asked while the page is open shows up live (the ledger event wakes it)
        second, second_hook = await rig.ask("git push --force")
        row = page.locator(f'#permissions tr[data-short-id="{second.short_id}"]')
        await expect(row).to_contain_text("git push --force")
        # the chat answers while the console's click is on its way: the click is told so

        async def chat_first(route: Any) -> None:
            taken = await rig.relay.intercept(*CHAT, "alice", f"yes {second.short_id}")
            assert taken is not None
            await route.continue_()

        await page.route(f"**/api/permissions/{second.short_id}", chat_first)
        await row.locator('button[data-answer="no"]').click()
        assert (await asyncio.wait_for(second_hook, 10))["decision"] == "allow"
        await expect(page.locator("#permissions-note")).to_have_text(
            f"Permission {second.short_id}: already answered by alice (allowed)"
        )
        await expect(page.locator("#permissions-empty")).to_be_visible()
        await browser.close()
    assert errors == []
    (a, b) = await rig.ledger.list_permissions()
    assert (a.state, a.answered_by) == (PermissionState.DENIED, "console")
    assert (b.state, b.answered_by) == (PermissionState.ALLOWED, "alice")
