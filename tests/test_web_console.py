"""The web console end to end: a real ledger, the real channel, real HTTP, real Chromium.

The tests play the agent's part through the real ledger API (claim → submit → accept →
complete) and the relay's (reserve → ``channel.deliver`` → mark sent), and watch the console:
over a raw SSE connection (ids, receipts, resume with Last-Event-ID) and in a headless browser
(send from the page, receipts and the reply appear, a dropped stream loses and duplicates
nothing, the quarantine buttons work).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentbridge.channels.web import WebChannel
from agentbridge.channels.web.testing import CHROMIUM_ARGS, running_console
from agentbridge.config import ConsoleConfig, parse_config
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import Message
from agentbridge.plugin.protocols import ChannelContext
from agentbridge.testing import async_wait_until
from agentbridge.testing.contract import ChannelContract, HarnessBase

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
async def console(ledger: Ledger, tmp_path: Path) -> AsyncIterator[WebChannel]:
    async with running_console(ledger, tmp_path / "state") as channel:
        yield channel


@pytest.fixture
async def http(console: WebChannel) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {console.token}"}
    async with aiohttp.ClientSession(console.base_url, headers=headers) as session:
        yield session


# ---------------------------------------------------------------------------- the agent's part


class Agent:
    """Plays the agent host and the outbox relay with the real ledger API."""

    def __init__(self, ledger: Ledger, console: WebChannel, name: str = "demo") -> None:
        self.ledger = ledger
        self.console = console
        self.name = name
        self.current: Message | None = None

    async def claim(self) -> Message:
        msg = await self.ledger.claim_next(self.name, "test-host", 60)
        assert msg is not None
        self.current = msg
        return msg

    async def submit(self) -> None:
        assert self.current
        await self.ledger.mark_submitted(self.current.id, self.current.fence)

    async def accept(self) -> None:
        assert self.current
        await self.ledger.mark_accepted(self.current.id, self.current.fence)

    async def complete(self, reply: str) -> None:
        assert self.current
        await self.ledger.complete(self.current.id, self.current.fence, reply)

    async def relay(self) -> None:
        """What the outbox relay does for a web reply: reserve, deliver, mark sent."""
        assert self.current
        (item,) = await self.ledger.list_replies(message_id=self.current.id)
        item = await self.ledger.reserve_send(item.id)
        platform_id = await self.console.deliver(item)
        assert platform_id == f"web-{item.id}"
        await self.ledger.mark_sent(item.id, platform_id)

    async def answer(self, reply: str) -> None:
        await self.claim()
        await self.submit()
        await self.accept()
        await self.complete(reply)
        await self.relay()


# ---------------------------------------------------------------------------- SSE client


@dataclass
class Frame:
    id: int | None
    event: str | None
    data: dict[str, Any] | None


class SseReader:
    """A minimal EventSource: frames separated by blank lines, comments skipped."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> Frame | None:
        """The next frame with an id or data; None at end of stream."""
        fields: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if "id" in fields or "data" in fields:
                    return Frame(
                        int(fields["id"]) if "id" in fields else None,
                        fields.get("event"),
                        json.loads(fields["data"]) if "data" in fields else None,
                    )
                fields = {}
                continue
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            if name in ("id", "event", "data"):
                fields[name] = value.removeprefix(" ")

    async def until(self, predicate: Any, timeout: float = 5.0) -> list[Frame]:
        """Frames up to and including the first one that satisfies ``predicate``."""
        frames: list[Frame] = []
        while True:
            frame = await self.next(timeout)
            assert frame is not None, f"stream ended; got {frames}"
            frames.append(frame)
            if predicate(frame):
                return frames


def replied(frame: Frame) -> bool:
    """The frame of the ``replied`` receipt (the outbox row was marked sent)."""
    return bool(frame.data and frame.data["event"]["receipt"] == "replied")


async def send(http: aiohttp.ClientSession, text: str, key: str, conversation: str = "c1") -> Any:
    async with http.post(
        "/api/send", json={"text": text, "key": key, "conversation": conversation, "agent": "demo"}
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()


# ---------------------------------------------------------------------------- API


async def test_send_is_idempotent_on_the_client_key(
    http: aiohttp.ClientSession, ledger: Ledger
) -> None:
    first = await send(http, "hello", "key-1")
    again = await send(http, "hello", "key-1")  # a retried POST (lost response)
    assert first["created"] is True and again["created"] is False
    assert first["message"]["id"] == again["message"]["id"]
    assert first["message"]["status"] == "queued"
    assert [e["receipt"] for e in first["message"]["events"]] == ["queued"]
    (stored,) = await ledger.list_messages()
    assert (stored.channel, stored.conversation, stored.sender, stored.agent) == (
        "web",
        "c1",
        "web",
        "demo",
    )
    assert stored.meta["via"] == "console"
    async with http.post("/api/send", json={"text": "other", "key": "key-1"}) as r:
        assert r.status == 409
    for bad in ({"text": "", "key": "k"}, {"text": "x"}, {"text": "x", "key": "bad key!"}):
        async with http.post("/api/send", json=bad) as r:
            assert r.status == 400, bad
    async with http.post("/api/send", json={"text": "x", "key": "k9", "agent": "gone"}) as r:
        assert r.status == 404  # an old tab must not queue messages for a removed agent
    assert len(await ledger.list_messages()) == 1


async def test_send_with_lone_surrogates_or_bad_utf8_is_never_a_500(
    http: aiohttp.ClientSession, ledger: Ledger
) -> None:
    headers = {"Content-Type": "application/json"}
    raw = b'{"text": "x\\ud800y", "key": "k-sur"}'
    async with http.post("/api/send", data=raw, headers=headers) as r:
        assert r.status == 200, await r.text()
    (stored,) = await ledger.list_messages()
    assert stored.text == "x\ufffdy"
    async with http.post("/api/send", data=b'{"text": "\xff", "key": "k2"}', headers=headers) as r:
        assert r.status == 400 and "not valid UTF-8" in (await r.json())["error"]
    assert len(await ledger.list_messages()) == 1


async def test_stream_carries_every_event_with_ledger_ids_and_receipts(
    http: aiohttp.ClientSession, ledger: Ledger, console: WebChannel
) -> None:
    async with http.get("/api/events", params={"after": "0"}) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        stream = SseReader(r)
        sent = await send(http, "what time is it?", "k-stream")
        await Agent(ledger, console).answer("teatime")
        frames = await stream.until(replied)
    events = await ledger.events_since(0)
    assert [f.id for f in frames] == [e.id for e in events]
    assert all(f.event == "ledger" for f in frames)
    receipts = [f.data["event"]["receipt"] for f in frames if f.data and f.data["event"]["receipt"]]
    assert receipts == ["queued", "injected", "working", "replied"]
    last = frames[-1].data
    assert last is not None
    assert last["message"]["id"] == sent["message"]["id"]
    assert last["message"]["status"] == "replied"
    assert last["message"]["reply"] == "teatime"


async def test_reply_shows_once_its_outbox_row_is_sent(
    http: aiohttp.ClientSession, ledger: Ledger, console: WebChannel
) -> None:
    mid = (await send(http, "hi", "k-r"))["message"]["id"]
    agent = Agent(ledger, console)

    async def view() -> Any:
        async with http.get(f"/api/messages/{mid}") as r:
            return await r.json()

    await agent.claim()
    assert (await view())["status"] == "queued"
    await agent.submit()
    assert (await view())["status"] == "injected"
    await agent.accept()
    assert (await view())["status"] == "working"
    await agent.complete("the answer")
    captured = await view()
    assert (captured["status"], captured["reply"]) == ("working", None)
    await agent.relay()
    done = await view()
    assert (done["status"], done["reply"]) == ("replied", "the answer")


async def test_reconnect_with_last_event_id_replays_exactly_the_missed_events(
    http: aiohttp.ClientSession, ledger: Ledger, console: WebChannel
) -> None:
    agent = Agent(ledger, console)
    async with http.get("/api/events", params={"after": "0"}) as r:
        stream = SseReader(r)
        await send(http, "one", "k-1")
        seen = await stream.until(lambda f: f.data and f.data["event"]["receipt"] == "queued")
    last_id = seen[-1].id
    assert last_id is not None
    # disconnected: the message goes all the way, and another one arrives
    await agent.answer("first answer")
    await send(http, "two", "k-2")
    missed = [e.id for e in await ledger.events_since(last_id)]
    assert len(missed) >= 8
    async with http.get(
        "/api/events", params={"after": "0"}, headers={"Last-Event-ID": str(last_id)}
    ) as r:
        stream = SseReader(r)
        replayed = [await stream.next() for _ in missed]
        assert [f.id for f in replayed if f] == missed  # in order, none twice, none skipped
        assert console.streams is not None
        assert console.streams.connections[-1] == ("last-event-id", last_id)
        # …and live again afterwards
        await agent.answer("second answer")
        tail = await stream.until(replied)
        assert tail[-1].data is not None and tail[-1].data["message"]["reply"] == "second answer"
        ids = [f.id for f in replayed if f] + [f.id for f in tail]
        assert ids == [e.id for e in await ledger.events_since(last_id)]


async def test_server_side_drop_ends_the_stream(
    http: aiohttp.ClientSession, console: WebChannel
) -> None:
    async with http.get("/api/events") as r:
        stream = SseReader(r)
        assert console.streams is not None
        await async_wait_until(lambda: _true(console.streams.open_count == 1), timeout=5)
        console.streams.drop_all()
        assert await stream.next() is None
    await async_wait_until(lambda: _true(console.streams.open_count == 0), timeout=5)


async def _true(value: bool) -> bool:
    return value


async def test_chat_stream_skips_other_conversations_but_moves_the_cursor(
    http: aiohttp.ClientSession, ledger: Ledger
) -> None:
    async with http.get("/api/events", params={"conversation": "mine", "agent": "demo"}) as r:
        stream = SseReader(r)
        await send(http, "not for you", "k-a", conversation="theirs")
        other = await stream.next()
        assert other is not None and other.event is None and other.data is None
        assert other.id == (await ledger.events_since(0))[-1].id
        await send(http, "for you", "k-b", conversation="mine")
        mine = await stream.next()
        assert mine is not None and mine.data is not None
        assert mine.data["message"]["text"] == "for you"


async def test_waiting_receipt_is_pushed_without_an_id(
    http: aiohttp.ClientSession, console: WebChannel
) -> None:
    from agentbridge.plugin.protocols import Receipt

    sent = await send(http, "hi", "k-w", conversation="c1")
    async with http.get("/api/events", params={"conversation": "c1"}) as r:
        stream = SseReader(r)
        assert console.streams is not None
        await async_wait_until(lambda: _true(console.streams.open_count == 1), timeout=5)
        mid = sent["message"]["id"]
        await console.receipt(Receipt(mid, "web", "c1", "working"))  # ledger shows these
        await console.receipt(Receipt(mid, "web", "c1", "waiting", "rate limited until 3:45pm"))
        frame = await stream.next()
    assert frame is not None and frame.id is None and frame.event == "receipt"
    assert frame.data == {
        "message_id": mid,
        "channel": "web",
        "conversation": "c1",
        "status": "waiting",
        "detail": "rate limited until 3:45pm",
    }


async def test_quarantine_requeue_and_drop(http: aiohttp.ClientSession, ledger: Ledger) -> None:
    a = await send(http, "a", "k-a")
    b = await send(http, "b", "k-b")
    for sent in (a, b):
        await ledger.quarantine(sent["message"]["id"], "attempts ran out")
    async with http.get("/api/status") as r:
        status = await r.json()
    assert [m["id"] for m in status["quarantined"]] == [a["message"]["id"], b["message"]["id"]]
    assert status["quarantined"][0]["status"] == "waiting"
    assert status["cursor"] == (await ledger.events_since(0))[-1].id
    async with http.post(f"/api/messages/{a['message']['id']}/requeue", json={}) as r:
        assert r.status == 200
        assert (await r.json())["message"]["state"] == "queued"
    async with http.post(f"/api/messages/{b['message']['id']}/drop", json={}) as r:
        assert r.status == 200
    assert (await ledger.get(a["message"]["id"])).state == "queued"
    dropped = await ledger.get(b["message"]["id"])
    assert dropped.state == "failed" and dropped.reason == "dropped from the console"
    async with http.post(f"/api/messages/{b['message']['id']}/requeue", json={}) as r:
        assert r.status == 409  # not quarantined any more
    async with http.post("/api/messages/999/drop", json={}) as r:
        assert r.status == 404


async def test_status_lists_replies_needing_attention(
    http: aiohttp.ClientSession, ledger: Ledger
) -> None:
    item = await ledger.enqueue_reply("telegram", "chat-1", "hello", key="r1")
    await ledger.reserve_send(item.id)
    await ledger.mark_unknown(item.id, "timeout after the request left")
    async with http.get("/api/status") as r:
        status = await r.json()
    assert [(o["id"], o["state"]) for o in status["outbox_attention"]] == [(item.id, "unknown")]
    assert status["status"]["agents"]["demo"]["health"] == "healthy"
    assert status["in_flight"] == []


async def test_status_lists_in_flight_messages_with_their_leases(
    http: aiohttp.ClientSession, ledger: Ledger, console: WebChannel
) -> None:
    await send(http, "work on this", "k-f")
    claimed = await Agent(ledger, console).claim()
    async with http.get("/api/status") as r:
        status = await r.json()
    (flight,) = status["in_flight"]
    assert (flight["id"], flight["state"], flight["lease_owner"]) == (
        claimed.id,
        "claimed",
        "test-host",
    )
    assert flight["lease_expires_at"] > status["server_time"]


def test_plugin_registers_the_console_unless_disabled(tmp_path: Path) -> None:
    from agentbridge.channels.web import plugin

    def channels(raw: dict[str, Any]) -> list[Any]:
        found: list[Any] = []
        config = parse_config({"ledger": {"path": str(tmp_path / "l.db")}, **raw})
        plugin.register_channels(register=found.append, config=config)
        return found

    (channel,) = channels({"console": {"port": 0}})
    assert isinstance(channel, WebChannel) and channel.name == "web"
    assert channel.console == ConsoleConfig(port=0)
    assert channels({"console": {"enabled": False}}) == []


# ---------------------------------------------------------------------------- the contract


class WebHarness(HarnessBase):
    """The page's POST /api/send is the platform: its 200 is the ack, anything else is not."""

    channel: WebChannel

    def __init__(self) -> None:
        super().__init__(WebChannel(ConsoleConfig(port=0)))

    async def start(self, ctx: ChannelContext) -> None:
        await super().start(ctx)

    async def inbound(self, platform_id: str, text: str, conversation: str, sender: str) -> None:
        headers = {"Authorization": f"Bearer {self.channel.token}"}
        body = {"text": text, "conversation": conversation, "key": platform_id}
        async with (
            aiohttp.ClientSession(self.channel.base_url, headers=headers) as session,
            session.post("/api/send", json=body) as response,
        ):
            await response.read()
            if response.status == 200:
                self.record_ack(platform_id)


class TestWebConsoleContract(ChannelContract):
    @pytest.fixture
    def harness(self) -> WebHarness:
        return WebHarness()


# ---------------------------------------------------------------------------- browser

browser_only = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium is not installed (scripts/setup --test)"
)


@pytest.fixture
async def page(console: WebChannel) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(console.url)  # token → cookie → redirect to the clean URL
        assert page.url == console.base_url
        yield page
        await browser.close()
        assert errors == []


async def open_chat(page: Any, conversation: str = "c-browser") -> None:
    from playwright.async_api import expect

    await page.evaluate(f"localStorage.setItem('agentbridge.conversation', '{conversation}')")
    await page.goto(page.url.split("#")[0] + "#/chat/demo")
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("#chat-conversation")).to_have_text(conversation)


def chips(page: Any, receipt: str) -> Any:
    return page.locator(f'article.turn .receipts [data-receipt="{receipt}"]')


@browser_only
@pytest.mark.browser
async def test_browser_send_then_receipts_and_reply_arrive_live(
    page: Any, ledger: Ledger, console: WebChannel
) -> None:
    from playwright.async_api import expect

    await open_chat(page)
    await page.fill("#text", "hello from the browser")
    await page.press("#text", "Enter")
    turn = page.locator("article.turn")
    await expect(turn).to_have_count(1)
    await expect(chips(page, "queued")).to_have_count(1)
    (stored,) = await async_wait_until(ledger.list_messages, what="the message is ingested")
    assert (stored.text, stored.conversation, stored.channel) == (
        "hello from the browser",
        "c-browser",
        "web",
    )
    await expect(turn).to_have_attribute("data-message-id", str(stored.id))
    agent = Agent(ledger, console)
    await agent.claim()
    await agent.submit()
    await expect(chips(page, "injected")).to_have_count(1)
    await expect(turn).to_have_attribute("data-status", "injected")
    await agent.accept()
    await expect(chips(page, "working")).to_have_count(1)
    await agent.complete("hello, human")
    await expect(turn.locator(".status-text")).to_contain_text("being delivered")
    await expect(turn.locator(".bubble.agent")).to_be_hidden()
    await agent.relay()
    await expect(chips(page, "replied")).to_have_count(1)
    await expect(turn.locator(".bubble.agent .reply")).to_have_text("hello, human")
    await expect(turn).to_have_attribute("data-status", "replied")
    await expect(turn).to_have_count(1)  # the optimistic bubble became the message: one turn
    # a new thread is a new conversation: an empty page, a different id
    await page.click("#new-thread")
    await expect(page.locator("#thread-empty")).to_be_visible()
    await expect(page.locator("article.turn")).to_have_count(0)
    await expect(page.locator("#chat-conversation")).not_to_have_text("c-browser")


@browser_only
@pytest.mark.browser
async def test_browser_dropped_stream_resumes_without_loss_or_duplicates(
    page: Any, ledger: Ledger, console: WebChannel, http: aiohttp.ClientSession
) -> None:
    from playwright.async_api import expect

    await open_chat(page)
    first = await send(http, "first", "k-1", conversation="c-browser")
    await expect(chips(page, "queued")).to_have_count(1)
    assert console.streams is not None
    streams = console.streams
    before = len(streams.connections)
    agent = Agent(ledger, console)
    # drop the connection, and make everything happen while the browser is away
    streams.drop_all()
    await agent.answer("answer one")
    second = await send(http, "second", "k-2", conversation="c-browser")
    await agent.claim()
    await agent.submit()
    await async_wait_until(
        lambda: _true(len(streams.connections) > before), what="the browser reconnects"
    )
    assert streams.connections[-1][0] == "last-event-id"
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("article.turn")).to_have_count(2)
    one = page.locator(f'article.turn[data-message-id="{first["message"]["id"]}"]')
    two = page.locator(f'article.turn[data-message-id="{second["message"]["id"]}"]')
    await expect(one.locator(".bubble.agent .reply")).to_have_text("answer one")
    await expect(two.locator('[data-receipt="injected"]')).to_have_count(1)
    await agent.accept()
    await agent.complete("answer two")
    await agent.relay()
    await expect(two.locator(".bubble.agent .reply")).to_have_text("answer two")
    # every receipt event exactly once, in ledger order, per message
    for sent, turn in ((first, one), (second, two)):
        events = await ledger.events_for(sent["message"]["id"])
        want = [str(e.id) for e in events if _receipt(e)]
        got = await turn.locator(".receipts [data-event-id]").evaluate_all(
            "nodes => nodes.map(n => n.dataset.eventId)"
        )
        assert got == want
        assert await turn.locator(".receipts [data-receipt]").evaluate_all(
            "nodes => nodes.map(n => n.dataset.receipt)"
        ) == ["queued", "injected", "working", "replied"]


def _receipt(event: Any) -> str | None:
    from agentbridge.channels.web.views import event_receipt

    return event_receipt(event)


@browser_only
@pytest.mark.browser
async def test_browser_quarantine_buttons_requeue_and_drop(
    page: Any, ledger: Ledger, http: aiohttp.ClientSession
) -> None:
    from playwright.async_api import expect

    a = (await send(http, "rotate the keys", "k-a"))["message"]["id"]
    b = (await send(http, "deploy friday", "k-b"))["message"]["id"]
    for mid in (a, b):
        await ledger.quarantine(mid, "quarantined after 3 attempts")
    await page.reload()
    rows = page.locator("#quarantine tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator('[data-tile="quarantined"] .tile-value')).to_have_text("2")
    await page.locator(f'tr[data-message-id="{a}"] button[data-action="requeue"]').click()
    await expect(rows).to_have_count(1)
    assert (await ledger.get(a)).state == "queued"
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.locator(f'tr[data-message-id="{b}"] button[data-action="drop"]').click()
    await expect(rows).to_have_count(0)
    await expect(page.locator("#quarantine-empty")).to_be_visible()
    assert (await ledger.get(b)).state == "failed"
    # the activity feed saw both decisions live
    await expect(page.locator("#activity li", has_text="requeued by a human")).to_have_count(1)
    await expect(page.locator("#activity li", has_text="dropped from the console")).to_have_count(1)


async def test_send_with_files_stores_them_and_refuses_oversized_ones(
    http: aiohttp.ClientSession, ledger: Ledger, tmp_path: Path
) -> None:
    from agentbridge.channels.web import uploads

    form = aiohttp.FormData()
    form.add_field("text", "")  # files without a caption are a message
    form.add_field("key", "up-1")
    form.add_field("file", b"a,b\n1,2\n", filename="../data.csv", content_type="text/csv")
    async with http.post("/api/send", data=form) as r:
        assert r.status == 200, await r.text()
        mid = (await r.json())["message"]["id"]
    stored = await ledger.get(mid)
    assert stored.meta["attachments"]["files"] == [
        {"name": "data.csv", "media_type": "text/csv", "size": 8}
    ]
    workspace = tmp_path / "state" / "workspace"
    assert (workspace / f".agentbridge/inbox/{mid}/data.csv").read_bytes() == b"a,b\n1,2\n"
    big = aiohttp.FormData()
    big.add_field("text", "too big")
    big.add_field("key", "up-2")
    big.add_field("file", b"x" * (uploads.MAX_UPLOAD_BYTES + 1), filename="big.bin")
    async with http.post("/api/send", data=big) as r:
        assert r.status == 413 and "big.bin" in (await r.json())["error"]
    assert len(await ledger.list_messages()) == 1


async def test_send_form_text_fields_are_capped_not_read_whole(
    http: aiohttp.ClientSession, ledger: Ledger
) -> None:
    from agentbridge.channels.web import uploads

    widest = "\U0001f600" * uploads.MAX_TEXT  # the longest text, 4 UTF-8 bytes a character
    form = aiohttp.FormData()
    form.add_field("text", widest)
    form.add_field("key", "cap-1")
    form.add_field("file", b"1", filename="one.txt")  # a form with a file: multipart
    async with http.post("/api/send", data=form) as r:
        assert r.status == 200, await r.text()
    for name, size in [("text", uploads.FIELD_BYTES["text"] + 1), ("key", 1025)]:
        form = aiohttp.FormData()
        form.add_field("text", "x" * size if name == "text" else "hi")
        form.add_field("key", "k" * size if name == "key" else f"cap-{name}")
        form.add_field("file", b"1", filename="one.txt")
        async with http.post("/api/send", data=form) as r:
            assert r.status == 413, await r.text()
            error = (await r.json())["error"]
        assert f"form field {name!r} is over {size - 1} bytes" in error
    assert [m.text for m in await ledger.list_messages()] == [widest]


@browser_only
@pytest.mark.browser
async def test_browser_upload_reaches_the_prompt_as_a_path(
    page: Any, ledger: Ledger, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    from agentbridge.agent.turn import build_prompt

    await open_chat(page)
    await page.set_input_files(
        "#files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"remember"}]
    )
    await page.fill("#text", "read this")
    await page.press("#text", "Enter")
    await expect(page.locator("article.turn")).to_have_count(1)
    (stored,) = await async_wait_until(ledger.list_messages, what="the upload is ingested")
    assert stored.text == "read this"
    claimed = await ledger.claim_next("demo", "t")
    assert claimed is not None and claimed.id == stored.id
    workspace = tmp_path / "state" / "workspace"
    prompt, _ = build_prompt(claimed, workspace, 100_000)  # what the agent gets pasted
    rel = f".agentbridge/inbox/{stored.id}/notes.txt"
    assert f"[attached file: {rel} (text/plain, 8 bytes)]" in prompt
    assert (workspace / rel).read_bytes() == b"remember"
