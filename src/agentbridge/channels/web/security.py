"""The console's gate: token, cookie, Host allowlist, Origin check and security headers.

Binding to 127.0.0.1 is not enough (DNS rebinding: a page on evil.example resolves its own name
to 127.0.0.1 and talks to us as "same origin"). So, like Jupyter:

* a random token per start; the printed URL ``/?token=…`` trades it for an HttpOnly,
  SameSite=Strict cookie and redirects to the clean URL (the token leaves the address bar and
  the history); scripts may send ``Authorization: Bearer <token>`` instead;
* the ``Host`` header must name us (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT`` or a
  configured ``console.allowed_hosts`` entry), else 403: a rebound name never matches;
* every state-changing request carries an ``Origin`` that is exactly one of ours, or none at all
  with ``Sec-Fetch-Site: same-origin|none`` (cookie auth), else 403: no cross-site form or fetch
  can act with the user's cookie;
* no CORS at all (never an ``Access-Control-Allow-Origin``), a strict CSP, no framing, no referrer.

Checks run in that order: Host (403), then credentials (401), then Origin (403).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD"})

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

UNAUTHORIZED_PAGE = """<!doctype html><meta charset="utf-8"><title>agentbridge console</title>
<p>This console needs its access token. Open the link <code>agentbridge up</code> printed
(<code>http://127.0.0.1:PORT/?token=…</code>), or read the token from
<code>console.token</code> in the bridge's state directory.</p>
"""


def new_token() -> str:
    """256 random bits, URL-safe: unguessable, and fine inside a query string."""
    return secrets.token_urlsafe(32)


def write_token_file(path: Path, token: str) -> None:
    """Write the token with mode 0600 from the first byte (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the file may have existed with looser bits
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)


def remove_token_file(path: Path, token: str) -> None:
    """Remove the token file if it is still ours (another bridge may have replaced it)."""
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


def host_allowlist(port: int, bind_host: str, extra: Iterable[str]) -> frozenset[str]:
    """Every ``Host`` header value we answer to (lowercase).

    A configured entry may carry a port or not; a bare name also matches with our port, so
    ``allowed_hosts = ["mybox"]`` allows both ``mybox`` (behind a proxy on :80) and ``mybox:PORT``.
    """
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if bind_host not in ("", "0.0.0.0", "::", "127.0.0.1", "localhost", "::1"):
        hosts.add(f"[{bind_host}]:{port}" if ":" in bind_host else f"{bind_host}:{port}")
    for entry in extra:
        entry = entry.strip().lower()
        if not entry:
            continue
        hosts.add(entry)
        if not entry.endswith("]") and ":" not in entry.rsplit("]", 1)[-1]:
            hosts.add(f"{entry}:{port}")
    return frozenset(h.lower() for h in hosts)


def origins_for(hosts: Iterable[str]) -> frozenset[str]:
    """The exact ``Origin`` values allowed: our hosts over http (and https, for a TLS proxy)."""
    return frozenset(f"{scheme}://{host}" for host in hosts for scheme in ("http", "https"))


class Guard:
    """The aiohttp middleware holding the token and the allowlists."""

    def __init__(self, token: str, port: int, bind_host: str, allowed_hosts: Iterable[str]):
        self.token = token
        self.port = port
        self.hosts = host_allowlist(port, bind_host, allowed_hosts)
        self.origins = origins_for(self.hosts)
        #: the cookie holds a value derived from the token, so a leaked cookie jar
        #: does not hand out the token that also works as a Bearer credential
        self.cookie_value = hmac.new(token.encode(), b"console-cookie", hashlib.sha256).hexdigest()
        #: cookies are shared by all ports of a host: the name carries the port
        self.cookie_name = f"agentbridge_console_{port}"

    # ------------------------------------------------------------------ checks

    def host_ok(self, request: web.Request) -> bool:
        """The raw ``Host`` header is one of ours (absent = refused)."""
        host = request.headers.get("Host", "")
        return host.lower() in self.hosts

    def token_ok(self, presented: str) -> bool:
        """Constant-time comparison with the token."""
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def auth_kind(self, request: web.Request) -> str | None:
        """``"bearer"``, ``"cookie"`` or None (not authenticated)."""
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and self.token_ok(header[7:].strip()):
            return "bearer"
        cookie = request.cookies.get(self.cookie_name, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.cookie_value.encode()):
            return "cookie"
        return None

    def origin_ok(self, request: web.Request, auth: str) -> bool:
        """A state-changing request comes from our own page (or from a non-browser client).

        A present ``Origin`` must be exactly ours. An absent one is fine with a Bearer token
        (browsers never attach that by themselves), and with the cookie only when the browser
        says the request is same-origin or user-initiated (``Sec-Fetch-Site``).
        """
        origin = request.headers.get("Origin")
        if origin is not None:
            return origin.lower() in self.origins
        if auth == "bearer":
            return True
        return request.headers.get("Sec-Fetch-Site", "") in ("same-origin", "none")

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Host → token exchange → credentials → Origin, then the handler."""
        if not self.host_ok(request):
            return web.Response(status=403, text="forbidden host\n")
        if "token" in request.query and request.method in SAFE_METHODS:
            return self._exchange(request)
        auth = self.auth_kind(request)
        if auth is None:
            wants_html = "text/html" in request.headers.get("Accept", "")
            if wants_html:
                return web.Response(status=401, text=UNAUTHORIZED_PAGE, content_type="text/html")
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.method not in SAFE_METHODS and not self.origin_ok(request, auth):
            return web.json_response({"error": "forbidden origin"}, status=403)
        return await handler(request)

    def _exchange(self, request: web.Request) -> web.StreamResponse:
        """``?token=`` → cookie + redirect to the same URL without the token."""
        if not self.token_ok(request.query.get("token", "")):
            return web.Response(status=401, text=UNAUTHORIZED_PAGE, content_type="text/html")
        kept = [(k, v) for k, v in request.rel_url.query.items() if k != "token"]
        clean = request.rel_url.with_query(kept or None)
        response = web.Response(status=303, headers={"Location": str(clean)})
        response.set_cookie(
            self.cookie_name,
            self.cookie_value,
            path="/",
            httponly=True,
            samesite="Strict",
        )
        return response


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: every response, errors and streams included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.popall("Access-Control-Allow-Origin", None)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
