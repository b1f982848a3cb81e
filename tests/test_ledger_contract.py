"""The backend-agnostic ledger contract, run against every backend this build has.

SQLite opened both ways callers do (a path, a ``sqlite:///`` URL), and PostgreSQL on a real
private server (``agentbridge.testing.postgres``; a new database per test). A new backend
joins by adding its factory to ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agentbridge.ledger.store import LedgerError, LedgerStore, open_ledger
from agentbridge.testing.ledger_contract import LedgerStoreContract, ManualClock, StoreFactory

#: backend name → (the test's private directory → how to name its database)
BACKENDS: dict[str, Callable[[Path], str | Path]] = {
    "sqlite-path": lambda root: root / "contract.db",
    "sqlite-url": lambda root: f"sqlite://{root / 'contract.db'}",
}
POSTGRES = "postgresql"


@pytest.fixture(params=[*sorted(BACKENDS), POSTGRES])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == POSTGRES:  # a new database on the session's real server
        url: str | Path = request.getfixturevalue("postgres_url")
    else:
        url = BACKENDS[request.param](tmp_path)

    def open_store(*, clock: ManualClock, max_attempts: int = 3) -> Awaitable[LedgerStore]:
        return open_ledger(url, clock=clock, max_attempts=max_attempts)

    return open_store


class TestLedgerStore(LedgerStoreContract):
    """Every contract test, once per backend."""


# ---------------------------------------------------------------------- open_ledger(url)


@pytest.mark.parametrize(
    "spelling",
    [
        lambda p: p,  # a Path
        lambda p: str(p),  # a bare path
        lambda p: f"sqlite://{p}",  # sqlite:///abs/path
        lambda p: f"sqlite:///{p}",  # SQLAlchemy's four slashes
        lambda p: f"SQLite://{p}",
    ],
)
async def test_every_sqlite_spelling_opens_the_same_file(
    tmp_path: Path, spelling: Callable[[Path], str | Path]
) -> None:
    path = tmp_path / "same.db"
    first = await open_ledger(path)
    try:
        msg = (await first.ingest("ch", "c", "s", "hi", key="k")).message
    finally:
        await first.close()
    store = await open_ledger(spelling(path))
    try:
        assert (await store.ingest("ch", "c", "s", "hi", key="k")).message.id == msg.id
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["mysql://bridge:s3cret@db.internal/ledger", "redis://:s3cret@h/0"])
async def test_an_unknown_scheme_is_refused_without_echoing_the_url(url: str) -> None:
    with pytest.raises(LedgerError, match="unknown ledger URL scheme") as refused:
        await open_ledger(url)
    assert "s3cret" not in str(refused.value) and "db.internal" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bridge:s3cret@127.0.0.1:1/ledger",
        "postgres://u:s3cret@127.0.0.1:1/d",
        "postgresql+psycopg://u:s3cret@127.0.0.1:1/d",
    ],
)
async def test_an_unreachable_postgresql_is_one_line_without_the_password(url: str) -> None:
    """Port 1 refuses at once: the error names where, never the password."""
    with pytest.raises(LedgerError, match=r"ledger 127\.0\.0\.1:1/") as refused:
        await open_ledger(url)
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("url", ["mysql://h/d", "sqlite://", "sqlite:///"])
async def test_unknown_or_empty_urls_are_one_line_errors(url: str) -> None:
    with pytest.raises(LedgerError, match="ledger: "):
        await open_ledger(url)
