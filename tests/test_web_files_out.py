"""Files back from the agent in the web console: the real relay, real HTTP, real Chromium.

The agent's part is played through the real ledger API; the file row has the shape
``send_file`` writes (``delivery/attachments.py``); the real outbox relay checks, reads and
hands it to the console, whose page links ``/api/files/<id>`` behind the console's guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentbridge.channels.web import WebChannel
from agentbridge.channels.web.testing import CHROMIUM_ARGS, running_console
from agentbridge.config import ConsoleConfig, OutboxConfig
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.delivery.relay import OutboxRelay
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import Message, OutboxItem
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until

CHROMIUM = "/usr/bin/chromium"
FAST = OutboxConfig(backoff=(0.05,), max_retries=3, ttl_seconds=60, drain_budget_seconds=5)
SETTLED = (OutboxState.SENT, OutboxState.UNKNOWN, OutboxState.FAILED)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@contextlib.asynccontextmanager
async def console_and_relay(
    ledger: Ledger, tmp_path: Path, **console: Any
) -> AsyncIterator[WebChannel]:
    """The console, and the real relay delivering to it (woken by the ledger)."""
    config = ConsoleConfig(port=0, **console)
    async with running_console(ledger, tmp_path / "state", console=config) as channel:
        relay = OutboxRelay(ledger, {"web": channel}, FAST, files=channel.files)
        unsubscribe = ledger.on_change(lambda kind, _: relay.poke() if kind == "outbox" else None)
        task = asyncio.create_task(relay.run())
        try:
            yield channel
        finally:
            unsubscribe()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def console(ledger: Ledger, tmp_path: Path) -> AsyncIterator[WebChannel]:
    async with console_and_relay(ledger, tmp_path) as channel:
        yield channel


@pytest.fixture
async def http(console: WebChannel) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {console.token}"}
    async with aiohttp.ClientSession(console.base_url, headers=headers) as session:
        yield session


def workspace(tmp_path: Path) -> Path:
    """The standalone console's agent cwd."""
    path = tmp_path / "state" / "workspace"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def in_flight(ledger: Ledger, text: str = "make the report") -> Message:
    """A console message the agent has accepted (it is working on it)."""
    result = await ledger.ingest("web", "c1", "web", text, key=f"k-{text}", agent="demo")
    claimed = await ledger.claim_next("demo", "test-host", 60)
    assert claimed is not None and claimed.id == result.message.id
    await ledger.mark_submitted(claimed.id, claimed.fence)
    await ledger.mark_accepted(claimed.id, claimed.fence)
    return claimed


async def agent_sends(
    ledger: Ledger, message: Message, path: Path, caption: str = "", channel: str = "web"
) -> OutboxItem:
    """The row ``send_file`` writes for a message in flight (correlated to it)."""
    size = path.lstat().st_size if path.exists() or path.is_symlink() else 0
    return await ledger.enqueue_reply(
        channel,
        message.conversation,
        file_text(path, size, caption),
        f"{FILE_KEY_PREFIX}agent-mcp:{message.id}:{path.name}",
        message_id=message.id,
    )


async def settled(ledger: Ledger, outbox_id: int) -> OutboxItem:
    async def check() -> OutboxItem | None:
        item = await ledger.get_reply(outbox_id)
        return item if item.state in SETTLED else None

    return await async_wait_until(check, timeout=15, what="file row settled")


async def test_a_sent_file_downloads_with_the_token_and_never_renders(
    console: WebChannel, http: aiohttp.ClientSession, ledger: Ledger, tmp_path: Path
) -> None:
    page = workspace(tmp_path) / "report.html"
    page.write_bytes(b"<script>alert(document.cookie)</script>")
    message = await in_flight(ledger)
    item = await agent_sends(ledger, message, page.resolve(), "the report")
    assert (await settled(ledger, item.id)).state is OutboxState.SENT
    async with http.get(f"/api/files/{item.id}") as r:
        assert r.status == 200
        assert await r.read() == page.read_bytes()
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''report.html"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with aiohttp.ClientSession(console.base_url) as anonymous:
        async with anonymous.get(f"/api/files/{item.id}") as r:
            assert r.status == 401
        rebound = {"Host": "evil.example", "Authorization": f"Bearer {console.token}"}
        async with anonymous.get(f"/api/files/{item.id}", headers=rebound) as r:
            assert r.status == 403
    async with http.get(f"/api/messages/{message.id}") as r:
        [listed] = (await r.json())["files"]
    assert listed == {
        "outbox_id": item.id,
        "name": "report.html",
        "size": page.stat().st_size,
        "caption": "the report",
        "state": "sent",
        "url": f"/api/files/{item.id}",
        "error": None,
    }


async def test_downloads_refuse_escapes_and_gone_files(
    console: WebChannel, http: aiohttp.ClientSession, ledger: Ledger, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the owner's secret")
    path = workspace(tmp_path) / "notes.txt"
    path.write_text("fine")
    message = await in_flight(ledger)
    item = await agent_sends(ledger, message, path.resolve())
    assert (await settled(ledger, item.id)).state is OutboxState.SENT
    path.unlink()
    path.symlink_to(secret)  # after the send: the link now points outside the cwd
    async with http.get(f"/api/files/{item.id}") as r:
        assert r.status == 403
        body = await r.text()
        assert "outside the agent's directory" in body and "owner's secret" not in body
    path.unlink()
    async with http.get(f"/api/files/{item.id}") as r:
        assert r.status == 410 and "no longer exists" in (await r.json())["error"]
    # a row naming a path outside the cwd (a forged key) is never sent, never served
    forged = await agent_sends(ledger, message, secret)
    row = await settled(ledger, forged.id)
    assert row.state is OutboxState.FAILED
    assert row.last_error is not None and "outside the agent's directory" in row.last_error
    async with http.get(f"/api/files/{forged.id}") as r:
        assert r.status == 404
    # ...and a file row of another channel is not this console's to serve
    other = await agent_sends(ledger, message, secret, channel="telegram")
    async with http.get(f"/api/files/{other.id}") as r:
        assert r.status == 404
    async with http.get("/api/files/99999") as r:
        assert r.status == 404


async def test_a_file_over_the_console_limit_fails_with_its_reason(
    ledger: Ledger, tmp_path: Path
) -> None:
    big = workspace(tmp_path) / "big.bin"
    big.write_bytes(b"x" * 11)
    async with console_and_relay(ledger, tmp_path, max_file_bytes=10) as console:
        message = await in_flight(ledger)
        item = await agent_sends(ledger, message, big.resolve())
        row = await settled(ledger, item.id)
        headers = {"Authorization": f"Bearer {console.token}"}
        async with (
            aiohttp.ClientSession(console.base_url, headers=headers) as http,
            http.get(f"/api/messages/{message.id}") as r,
        ):
            [listed] = (await r.json())["files"]
    assert row.state is OutboxState.FAILED
    assert (
        row.last_error == "permanent: file too big: big.bin is 11 bytes, over web's 10-byte limit"
    )
    assert listed["url"] is None and listed["error"] == row.last_error
    [notice] = [r for r in await ledger.list_replies() if r.idem_key == f"file-refused:{item.id}"]
    assert "big.bin (11 bytes), but it is too big for web (limit 10 bytes)" in notice.text


# ---------------------------------------------------------------------------- browser

browser_only = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium is not installed (scripts/setup --test)"
)


@browser_only
@pytest.mark.browser
async def test_browser_shows_the_file_and_downloads_it(
    console: WebChannel, ledger: Ledger, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    data = bytes(range(256)) * 40
    (workspace(tmp_path) / "build.tar").write_bytes(data)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(accept_downloads=True)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(console.url)  # token → cookie
        await page.evaluate("localStorage.setItem('agentbridge.conversation', 'c1')")
        await page.goto(console.base_url + "#/chat/demo")
        await page.reload()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        message = await in_flight(ledger, "build it")
        item = await agent_sends(ledger, message, (workspace(tmp_path) / "build.tar").resolve(),
                                 "the build")  # fmt: skip
        link = page.locator(f'article.turn li.file[data-outbox-id="{item.id}"] a.file-link')
        await expect(link).to_have_text(f"build.tar ({len(data) / 1024:.1f} KB)")
        await expect(page.locator("li.file .caption")).to_have_text("the build")
        async with page.expect_download() as info:
            await link.click()
        download = await info.value
        assert download.suggested_filename == "build.tar"
        assert Path(await download.path()).read_bytes() == data
        await browser.close()
    assert errors == []
