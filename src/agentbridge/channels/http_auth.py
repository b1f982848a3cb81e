"""Settings and request authentication for the HTTP API channel.

Kept apart from the server so the security rules (who may call, what counts as a replay,
which Host headers are ours) read as one small unit and can be tested on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentbridge.config import ConfigError

SIGNATURE_HEADER = "X-Agentbridge-Signature"
TIMESTAMP_HEADER = "X-Agentbridge-Timestamp"
#: a signed request older (or newer) than this is refused: bounds how long a capture can replay
SIGNATURE_WINDOW = 300.0
#: Host header names that always mean "this machine" (DNS rebinding defence)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_KEYS = {
    "host",
    "port",
    "token_file",
    "hmac_secret_file",
    "allowed_hosts",
    "max_body_bytes",
    "max_wait",
}


@dataclass(frozen=True)
class HttpSettings:
    """The validated ``[channels.http]`` table."""

    host: str = "127.0.0.1"
    port: int = 8766
    token_file: Path | None = None  # None: ``<state_dir>/http-api.token``
    hmac_secret_file: Path | None = None
    allowed_hosts: frozenset[str] = frozenset()
    max_body_bytes: int = 1_048_576
    max_wait: float = 300.0


def parse_settings(table: dict[str, Any]) -> HttpSettings:
    """Validate ``[channels.http]``; every error is one line naming the key."""
    where = "config: channels.http."
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                f"config: unknown key channels.http.{key!r} (allowed: {', '.join(sorted(_KEYS))})"
            )

    def typed(key: str, kind: type, default: Any) -> Any:
        value = table.get(key, default)
        if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        want = {int: "an integer", float: "a number", str: "a string"}[kind]
        raise ConfigError(f"{where}{key} must be {want}, not {value!r}")

    port = typed("port", int, 8766)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}port must be 0..65535, not {port}")
    max_body = typed("max_body_bytes", int, 1_048_576)
    if max_body < 1024:
        raise ConfigError(f"{where}max_body_bytes must be >= 1024, not {max_body}")
    max_wait = typed("max_wait", float, 300.0)
    if max_wait <= 0:
        raise ConfigError(f"{where}max_wait must be > 0, not {max_wait}")
    hosts = table.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(f"{where}allowed_hosts must be a list of host names, not {hosts!r}")
    token_file = typed("token_file", str, None)
    secret_file = typed("hmac_secret_file", str, None)
    return HttpSettings(
        host=typed("host", str, "127.0.0.1"),
        port=port,
        token_file=Path(token_file).expanduser() if token_file else None,
        hmac_secret_file=Path(secret_file).expanduser() if secret_file else None,
        allowed_hosts=frozenset(h.lower() for h in hosts),
        max_body_bytes=max_body,
        max_wait=max_wait,
    )


def _check_private(path: Path, key: str) -> None:
    """A credential others can read is a leaked credential: refuse it rather than use it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"config: channels.http.{key}: {path} has mode {mode:04o}; run: chmod 600 {path}"
        )


def load_or_create_token(path: Path) -> str:
    """Read the bearer token, creating a random one (mode 0600) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its token
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(token + "\n")
    _check_private(path, "token_file")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"config: channels.http.token_file: {path} holds a token under 16 chars")
    return token


def load_secret(path: Path) -> bytes:
    """Read the HMAC secret (never generated: both sides must hold the same one)."""
    if not path.exists():
        raise ConfigError(f"config: channels.http.hmac_secret_file: {path} does not exist")
    _check_private(path, "hmac_secret_file")
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise ConfigError(f"config: channels.http.hmac_secret_file: {path} holds under 16 bytes")
    return secret


def sign(secret: bytes, timestamp: str, method: str, path_qs: str, body: bytes) -> str:
    """The signature header value for one request.

    The signed bytes are ``"{timestamp}\\n{METHOD}\\n{path?query}\\n" + body``: signing the
    timestamp is what makes the replay window mean anything, and signing method and path stops
    a captured signature from being reused on another URL.
    """
    payload = f"{timestamp}\n{method.upper()}\n{path_qs}\n".encode() + body
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


class Authenticator:
    """Checks one request's credentials: a bearer token or a fresh, unused HMAC signature."""

    def __init__(
        self, token: str, secret: bytes | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._token = token.encode()
        self._secret = secret
        self._clock = clock
        self._seen: dict[str, float] = {}  # signature -> when it stops being replayable

    def check(self, headers: dict[str, str], method: str, path_qs: str, body: bytes) -> str | None:
        """None when the request is authentic, else the one-line reason it is not."""
        auth = headers.get("authorization", "")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer":
                return "Authorization must be 'Bearer <token>'"
            if hmac.compare_digest(value.strip().encode(), self._token):
                return None
            return "bad token"
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature is None:
            return f"missing credentials: send Authorization: Bearer <token> or {SIGNATURE_HEADER}"
        if self._secret is None:
            return "HMAC signatures are not enabled (channels.http.hmac_secret_file)"
        stamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        try:
            age = abs(self._clock() - float(stamp))
        except ValueError:
            return f"{TIMESTAMP_HEADER} must be unix seconds"
        if age > SIGNATURE_WINDOW:
            return f"{TIMESTAMP_HEADER} is outside the {SIGNATURE_WINDOW:.0f} s window"
        expected = sign(self._secret, stamp, method, path_qs, body)
        if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
            return "bad signature"
        now = self._clock()
        self._seen = {sig: until for sig, until in self._seen.items() if until > now}
        if expected in self._seen:
            return "replayed signature"
        self._seen[expected] = now + 2 * SIGNATURE_WINDOW
        return None


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """True when the Host header names this machine (or a configured name).

    A browser tricked by DNS rebinding sends the attacker's host name here, so refusing unknown
    names keeps web pages from talking to the API even though they reach our port.
    """
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8766
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host in allowed
