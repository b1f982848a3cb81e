"""The web console's gate, attacked with a plain HTTP client.

A real ledger on a tmp file and the real channel on an ephemeral port: DNS rebinding (a foreign
Host), cross-site requests (a foreign Origin), missing or wrong credentials, the token exchange
and its cookie, and the headers every response must (and must never) carry.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agentbridge.channels.web import WebChannel
from agentbridge.channels.web.testing import running_console
from agentbridge.config import ConsoleConfig
from agentbridge.ledger.sqlite import Ledger


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = await Ledger.open(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
async def console(ledger: Ledger, tmp_path: Path) -> AsyncIterator[WebChannel]:
    config = ConsoleConfig(port=0, allowed_hosts=("bridge.lan",))
    async with running_console(ledger, tmp_path / "state", console=config) as channel:
        yield channel


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # no cookie jar: every credential a test sends is explicit in its headers
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def bearer(console: WebChannel) -> dict[str, str]:
    return {"Authorization": f"Bearer {console.token}"}


def cookie(console: WebChannel) -> dict[str, str]:
    """The cookie the token exchange hands out (asserted in test_token_exchange)."""
    assert console._guard is not None
    return {"Cookie": f"{console._guard.cookie_name}={console._guard.cookie_value}"}


def origin(console: WebChannel) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{console.port}"}


SEND = {"text": "hi", "key": "k-1", "conversation": "web-test"}


# ---------------------------------------------------------------------------- credentials


async def test_no_or_wrong_credentials_are_refused(
    console: WebChannel, http: aiohttp.ClientSession
) -> None:
    base = console.base_url
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {console.token}x"},
        {"Authorization": f"Basic {console.token}"},
        {"Cookie": f"agentbridge_console_{console.port}=forged"},
        {"Cookie": f"agentbridge_console_{console.port}={console.token}"},  # token ≠ cookie value
    ):
        for path in ("", "api/status", "api/events", "static/console.js"):
            async with http.get(base + path, headers=headers, allow_redirects=False) as r:
                assert r.status == 401, (path, headers)
        async with http.post(
            base + "api/send", json=SEND, headers={**headers, **origin(console)}
        ) as r:
            assert r.status == 401, headers
    async with http.get(base, headers={"Accept": "text/html"}) as r:
        assert r.status == 401
        assert "token" in await r.text()


async def test_bearer_and_cookie_are_accepted(
    console: WebChannel, http: aiohttp.ClientSession
) -> None:
    for headers in (bearer(console), cookie(console)):
        async with http.get(console.base_url + "api/status", headers=headers) as r:
            assert r.status == 200
            assert "agents" in (await r.json())["status"]


async def test_token_exchange_sets_httponly_strict_cookie_and_redirects(
    console: WebChannel, http: aiohttp.ClientSession
) -> None:
    async with http.get(console.url, allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/"  # the token leaves the address bar
        raw = r.headers.getall("Set-Cookie")
    assert len(raw) == 1
    attrs = [part.strip().lower() for part in raw[0].split(";")]
    name, value = raw[0].split(";")[0].split("=", 1)
    assert name == f"agentbridge_console_{console.port}"
    assert console.token not in value  # a derived value, not the token itself
    assert "httponly" in attrs
    assert "samesite=strict" in attrs
    assert "path=/" in attrs
    async with http.get(console.base_url, headers={"Cookie": f"{name}={value}"}) as r:
        assert r.status == 200
        assert "text/html" in r.headers["Content-Type"]
    # other query parameters survive the redirect
    async with http.get(
        console.base_url + f"?x=1&token={console.token}", allow_redirects=False
    ) as r:
        assert r.headers["Location"] == "/?x=1"
    async with http.get(console.base_url + "?token=wrong", allow_redirects=False) as r:
        assert r.status == 401
        assert "Set-Cookie" not in r.headers


async def test_token_file_is_private_and_removed_at_stop(ledger: Ledger, tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with running_console(ledger, state) as channel:
        path = state / "console.token"
        assert path.read_text().strip() == channel.token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(channel.token) >= 40
        assert channel.url == f"http://127.0.0.1:{channel.port}/?token={channel.token}"
    assert not path.exists()
    await channel.stop()  # twice is fine


# ---------------------------------------------------------------------------- Host allowlist


async def test_foreign_host_is_refused_even_with_the_token(
    console: WebChannel, http: aiohttp.ClientSession
) -> None:
    port = console.port
    for host in (
        f"evil.example:{port}",
        "evil.example",
        f"127.0.0.1:{port + 1}",
        "127.0.0.1",
        f"localhost.evil.example:{port}",
        f"127.0.0.1.nip.io:{port}",
    ):
        async with http.get(
            console.base_url + "api/status", headers={**bearer(console), "Host": host}
        ) as r:
            assert r.status == 403, host
        async with http.get(console.url, headers={"Host": host}, allow_redirects=False) as r:
            assert r.status == 403, host
            assert "Set-Cookie" not in r.headers
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"LOCALHOST:{port}",
        f"[::1]:{port}",
        "bridge.lan",  # configured allowed_hosts entry, bare (behind a proxy on :80)…
        f"bridge.lan:{port}",  # …and with our port
    ):
        async with http.get(
            console.base_url + "api/status", headers={**bearer(console), "Host": host}
        ) as r:
            assert r.status == 200, host


# ---------------------------------------------------------------------------- Origin / CSRF


async def test_foreign_origin_on_post_is_refused(
    console: WebChannel, http: aiohttp.ClientSession, ledger: Ledger
) -> None:
    url = console.base_url + "api/send"
    port = console.port
    for creds in (cookie(console), bearer(console)):
        for bad in (
            "http://evil.example",
            f"http://evil.example:{port}",
            f"http://127.0.0.1:{port + 1}",
            f"https://127.0.0.1:{port}.evil.example",
            "null",
        ):
            async with http.post(url, json=SEND, headers={**creds, "Origin": bad}) as r:
                assert r.status == 403, (bad, creds)
    # cookie, no Origin: only when the browser vouches for same-origin
    for site, expected in (
        (None, 403),
        ("cross-site", 403),
        ("same-site", 403),
        ("same-origin", 200),
    ):
        headers = {**cookie(console)}
        if site:
            headers["Sec-Fetch-Site"] = site
        async with http.post(url, json={**SEND, "key": f"k-{site}"}, headers=headers) as r:
            assert r.status == expected, site
    assert await ledger.list_messages() != []
    async with http.post(
        url, json={**SEND, "key": "k-o"}, headers={**cookie(console), **origin(console)}
    ) as r:
        assert r.status == 200
    async with http.post(url, json={**SEND, "key": "k-b"}, headers=bearer(console)) as r:
        assert r.status == 200  # scripts: a Bearer header is never sent by a browser on its own
    # human actions are state-changing too
    async with http.post(
        console.base_url + "api/messages/1/drop",
        json={},
        headers={**cookie(console), "Origin": "http://evil.example"},
    ) as r:
        assert r.status == 403
    assert (await ledger.get(1)).state == "queued"


async def test_form_posts_are_refused(console: WebChannel, http: aiohttp.ClientSession) -> None:
    """An HTML form can only send "simple" content types: the API takes JSON only."""
    async with http.post(
        console.base_url + "api/send",
        data={"text": "hi", "key": "k"},
        headers={**cookie(console), **origin(console)},
    ) as r:
        assert r.status == 415


# ---------------------------------------------------------------------------- headers


async def test_no_cors_and_security_headers_everywhere(
    console: WebChannel, http: aiohttp.ClientSession
) -> None:
    base = console.base_url
    evil = {"Origin": "http://evil.example"}
    checks = [
        ("GET", base, {**bearer(console), **evil}),
        ("GET", base + "api/status", {**bearer(console), **evil}),
        ("GET", base + "api/status", evil),  # 401
        ("GET", base + "api/status", {"Host": "evil.example"}),  # 403
        ("OPTIONS", base + "api/send", {**evil, "Access-Control-Request-Method": "POST"}),
        ("GET", base + "static/console.js", bearer(console)),
    ]
    for method, url, headers in checks:
        async with http.request(method, url, headers=headers, allow_redirects=False) as r:
            assert r.status != 204
            lowered = {k.lower() for k in r.headers}
            assert "access-control-allow-origin" not in lowered, (method, url)
            assert "access-control-allow-credentials" not in lowered
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(base + "api/status", headers=bearer(console)) as r:
        assert r.headers["Cache-Control"] == "no-store"


async def test_busy_port_is_a_readable_error(ledger: Ledger, tmp_path: Path) -> None:
    from agentbridge.channels.web import ConsoleStartError

    async with running_console(ledger, tmp_path / "a") as first:
        taken = ConsoleConfig(port=first.port)
        with pytest.raises(ConsoleStartError, match="port = 0"):
            async with running_console(ledger, tmp_path / "b", console=taken):
                pass
