"""Choosing the PostgreSQL ledger in the config: ``ledger = "postgresql://…"``, ``[ledger]
url``, or ``AGENTBRIDGE_LEDGER_URL``; ``path`` keeps choosing SQLite; no error repeats a
password."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agentbridge.config import LEDGER_URL_ENV, ConfigError, parse_config
from agentbridge.ledger.postgres.core import PostgresLedger
from agentbridge.ledger.store import open_ledger

URL = "postgresql://bridge:s3cret@db.internal:5433/agentbridge"


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)


def test_the_shorthand_and_the_table_key_name_a_postgresql_ledger(tmp_path: Path) -> None:
    short = parse_config(tomllib.loads(f'ledger = "{URL}"')).ledger
    table = parse_config(tomllib.loads(f'[ledger]\nurl = "{URL}"\nmax_attempts = 5')).ledger
    assert short.url == table.url == URL and short.target == URL
    assert table.max_attempts == 5


def test_path_still_chooses_sqlite(tmp_path: Path) -> None:
    led = parse_config(tomllib.loads(f'[ledger]\npath = "{tmp_path}/l.db"')).ledger
    assert (led.url, led.target) == (None, tmp_path / "l.db")
    bare = parse_config(tomllib.loads(f'ledger = "{tmp_path}/m.db"')).ledger
    assert bare.target == tmp_path / "m.db"


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(LEDGER_URL_ENV, URL)
    led = parse_config(tomllib.loads(f'[ledger]\npath = "{tmp_path}/l.db"')).ledger
    assert led.target == URL


@pytest.mark.parametrize("text", [f'[ledger]\nurl = "{URL.replace("postgresql", "mysql")}"'])
def test_a_url_that_is_not_postgresql_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ledger\.url must be a postgresql") as refused:
        parse_config(tomllib.loads(text))
    assert "s3cret" not in str(refused.value)


async def test_the_configured_url_opens_the_postgresql_store(postgres_url: str) -> None:
    config = parse_config(tomllib.loads(f'ledger = "{postgres_url}"'))
    store = await open_ledger(config.ledger.target)
    try:
        assert isinstance(store, PostgresLedger)
        assert (await store.ingest("ch", "c", "s", "hi", key="k")).created
    finally:
        await store.close()
