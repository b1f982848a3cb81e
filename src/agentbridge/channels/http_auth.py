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
from collections.abc import Awaitable, Callable, Sequence
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
    "tokens",
    "hmac_secret_file",
    "hmac_keys",
    "allowed_hosts",
    "max_body_bytes",
    "max_wait",
}
#: the one sender a credential configured without ``senders`` may send as
DEFAULT_SENDER = "http"
#: in ``senders``: this credential may name any sender (a relay speaking for many people)
ANY_SENDER = "*"


@dataclass(frozen=True)
class CredentialSpec:
    """One configured credential: where its secret lives and whom it may speak for.

    ``path`` None is the default token file in the channel's state dir.
    """

    path: Path | None
    senders: tuple[str, ...] = (DEFAULT_SENDER,)


@dataclass(frozen=True)
class Credential:
    """An authenticated caller: a label for the log (never the secret) and its senders."""

    label: str
    senders: tuple[str, ...]

    @property
    def default_sender(self) -> str:
        """The sender of a request that names none."""
        return DEFAULT_SENDER if self.senders[0] == ANY_SENDER else self.senders[0]

    def allows(self, sender: str) -> bool:
        """True when this credential may put ``sender`` into an envelope."""
        return ANY_SENDER in self.senders or sender in self.senders


@dataclass(frozen=True)
class HttpSettings:
    """The validated ``[channels.http]`` table."""

    host: str = "127.0.0.1"
    port: int = 8766
    tokens: tuple[CredentialSpec, ...] = (CredentialSpec(None),)
    hmac_keys: tuple[CredentialSpec, ...] = ()
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
    tokens = _credentials(table, "tokens", "token_file", token_file)
    if not tokens:  # nothing configured: one generated token in the state dir (as always)
        tokens = [CredentialSpec(None)]
    return HttpSettings(
        host=typed("host", str, "127.0.0.1"),
        port=port,
        tokens=tuple(tokens),
        hmac_keys=tuple(_credentials(table, "hmac_keys", "secret_file", secret_file)),
        allowed_hosts=frozenset(h.lower() for h in hosts),
        max_body_bytes=max_body,
        max_wait=max_wait,
    )


def _credentials(
    table: dict[str, Any], key: str, file_key: str, single: str | None
) -> list[CredentialSpec]:
    """``tokens`` / ``hmac_keys``: a list of ``{ FILE_KEY = "...", senders = [...] }``.

    The single-file shorthand (``token_file``, ``hmac_secret_file``) comes first and may only
    send as ``DEFAULT_SENDER``: that is what every existing config keeps meaning.
    """
    out = [CredentialSpec(Path(single).expanduser())] if single else []
    entries = table.get(key, [])
    name = f"config: channels.http.{key}"
    if not isinstance(entries, list):
        raise ConfigError(f"{name} must be a list of {{ {file_key} = ..., senders = [...] }}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) - {file_key, "senders"}:
            raise ConfigError(
                f'{name}[{i}] must be {{ {file_key} = "...", senders = [...] }}, not {entry!r}'
            )
        path = entry.get(file_key)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{name}[{i}].{file_key} must be a file path")
        senders = entry.get("senders", [DEFAULT_SENDER])
        if (
            not isinstance(senders, list)
            or not senders
            or not all(isinstance(s, str) and s for s in senders)
        ):
            raise ConfigError(
                f"{name}[{i}].senders must be a non-empty list of sender names"
                f' (or ["{ANY_SENDER}"] for any), not {senders!r}'
            )
        out.append(CredentialSpec(Path(path).expanduser(), tuple(senders)))
    return out


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


def load_credentials(
    settings: HttpSettings, state_dir: Path
) -> tuple[list[tuple[str, Credential]], list[tuple[bytes, Credential]]]:
    """Read every configured token and HMAC key, each with the senders it may speak for.

    Two entries holding the same secret would make "which senders?" ambiguous: refused.
    """
    tokens: list[tuple[str, Credential]] = []
    for spec in settings.tokens:
        path = spec.path or state_dir / "http-api.token"
        tokens.append((load_or_create_token(path), Credential(f"token {path}", spec.senders)))
    keys: list[tuple[bytes, Credential]] = []
    for spec in settings.hmac_keys:
        assert spec.path is not None  # the parser requires a file for every key
        keys.append((load_secret(spec.path), Credential(f"hmac key {spec.path}", spec.senders)))
    for what, secrets_ in (("tokens", [t for t, _ in tokens]), ("hmac_keys", [k for k, _ in keys])):
        if len(set(secrets_)) < len(secrets_):
            raise ConfigError(
                f"config: channels.http.{what}: two entries hold the same secret;"
                " give each caller its own file"
            )
    return tokens, keys


def sign(secret: bytes, timestamp: str, method: str, path_qs: str, body: bytes) -> str:
    """The signature header value for one request.

    The signed bytes are ``"{timestamp}\\n{METHOD}\\n{path?query}\\n" + body``: signing the
    timestamp is what makes the replay window mean anything, and signing method and path stops
    a captured signature from being reused on another URL.
    """
    payload = f"{timestamp}\n{method.upper()}\n{path_qs}\n".encode() + body
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


class Refused(Exception):
    """A request whose credentials do not hold; ``str()`` is the one line the caller sees."""


#: records a used signature until a time; False when it was used already (``Ledger.claim_nonce``)
ClaimNonce = Callable[[str, float], Awaitable[bool]]


class Authenticator:
    """Checks one request's credentials: a bearer token or a fresh, unused HMAC signature.

    Used signatures are claimed through ``claim`` (the ledger's ``seen_nonces`` table), so a
    request captured and replayed after a restart is refused as surely as one replayed at once.
    """

    def __init__(
        self,
        tokens: Sequence[tuple[str, Credential]],
        keys: Sequence[tuple[bytes, Credential]],
        claim: ClaimNonce,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = [(token.encode(), cred) for token, cred in tokens]
        self._keys = list(keys)
        self._claim = claim
        self._clock = clock

    async def check(
        self, headers: dict[str, str], method: str, path_qs: str, body: bytes
    ) -> Credential:
        """The caller's credential; raises ``Refused`` with the reason when there is none."""
        auth = headers.get("authorization", "")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer":
                raise Refused("Authorization must be 'Bearer <token>'")
            presented = value.strip().encode()
            found = None
            for token, cred in self._tokens:  # compare with every one: no early-exit timing
                if hmac.compare_digest(presented, token):
                    found = cred
            if found is None:
                raise Refused("bad token")
            return found
        signature = headers.get(SIGNATURE_HEADER.lower())
        if signature is None:
            raise Refused(
                f"missing credentials: send Authorization: Bearer <token> or {SIGNATURE_HEADER}"
            )
        if not self._keys:
            raise Refused("HMAC signatures are not enabled (channels.http.hmac_keys)")
        stamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        try:
            signed_at = float(stamp)
        except ValueError:
            raise Refused(f"{TIMESTAMP_HEADER} must be unix seconds") from None
        now = self._clock()
        if not abs(now - signed_at) <= SIGNATURE_WINDOW:  # also refuses nan
            raise Refused(f"{TIMESTAMP_HEADER} is outside the {SIGNATURE_WINDOW:.0f} s window")
        presented = signature.strip().encode()
        found = None
        for secret, cred in self._keys:
            expected = sign(secret, stamp, method, path_qs, body)
            if hmac.compare_digest(presented, expected.encode()):
                found = cred
        if found is None:
            raise Refused("bad signature")
        # kept until the timestamp check refuses it anyway (with a margin for clock steps)
        nonce = hashlib.sha256(presented).hexdigest()
        if not await self._claim(nonce, max(now, signed_at) + 2 * SIGNATURE_WINDOW):
            raise Refused("replayed signature: this exact request was already accepted")
        return found


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
