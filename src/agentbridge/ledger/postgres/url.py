"""PostgreSQL ledger URLs: which ones name this backend, and how to print one safely.

A URL may carry a password (``postgresql://bridge:secret@db/ledger``); no log line or error
of the ledger ever repeats it: errors name the host and database only, and any text that came
from the driver has the password cut out before it is shown.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL ledger (``postgresql://`` or ``postgres://``,
    also with a driver suffix such as ``postgresql+psycopg://``)."""
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower().split("+", 1)[0] in SCHEMES


def driver_url(url: str) -> str:
    """The URL as libpq takes it (no ``+driver`` suffix in the scheme)."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if "+" in scheme else url


def where(url: str) -> str:
    """``host:port/database`` of ``url``, for messages: never the user or password."""
    try:
        parts = urlsplit(driver_url(url))
        host = parts.hostname or "local socket"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{host}{port}{parts.path or '/'}"


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (as written and decoded) cut out."""
    try:
        password = urlsplit(driver_url(url)).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        assert secret is not None
        text = text.replace(secret, "***")
    return text
