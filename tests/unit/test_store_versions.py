"""Rolling upgrades: a schema records the oldest folderseal version that can use it (the
meta row ``oldest_code``, set by a migration that older code cannot live with; absent:
any), and a node older than that refuses to start, on either SQL backend, with a
ConfigError (exit 78) that names the version it needs."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from folderseal import __version__
from folderseal.core.errors import ConfigError
from folderseal.store.postgres import PostgresStore, migrate
from folderseal.store.sqlite import SqliteStore
from folderseal.store.sqltext import OLDEST_CODE, check_code_version, version_tuple
from tests.postgres import own_schema


def test_versions_compare_as_numbers() -> None:
    assert version_tuple("1.10.0") > version_tuple("1.9.3")
    assert version_tuple("2.0.0rc1") == (2, 0, 0)
    assert version_tuple("0.1") < version_tuple("0.1.1")


def test_only_code_older_than_the_schema_allows_is_refused() -> None:
    """No oldest_code, or one this code reaches, passes; an older code is told which
    version to upgrade to."""
    check_code_version(None, "the store", code="0.1.0")
    check_code_version("0.1.0", "the store", code="0.1.0")
    check_code_version("0.1.0", "the store", code="0.2.0")
    with pytest.raises(ConfigError, match=r"to 0\.3\.0 or newer") as refused:
        check_code_version("0.3.0", "the store at db", code="0.2.9")
    assert refused.value.exit_code == 78 and "this is folderseal 0.2.9" in str(refused.value)


def test_a_sqlite_store_for_newer_code_only_is_refused(tmp_path: Path) -> None:
    """The daemon's opening and status' alike refuse it; the store itself is untouched."""
    store = SqliteStore.open(tmp_path, "node-a")
    store._run("set_meta", key=OLDEST_CODE, value=__version__)
    store.close()
    SqliteStore.open(tmp_path, "node-a").close()  # this very version may use it
    store = SqliteStore.open(tmp_path, "node-a")
    store._run("set_meta", key=OLDEST_CODE, value="99.0.1")
    store.close()
    with pytest.raises(ConfigError, match=r"folderseal 99\.0\.1 or newer"):
        SqliteStore.open(tmp_path, "node-a")
    with pytest.raises(ConfigError, match=r"folderseal 99\.0\.1 or newer"):
        SqliteStore.reading(tmp_path / "folderseal.sqlite", "status")


def test_a_postgres_store_for_newer_code_only_is_refused(postgres_server: str,
                                                         tmp_path: Path) -> None:
    with own_schema(postgres_server) as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (%s, %s)",
                         (OLDEST_CODE, __version__))
        PostgresStore.open(url, "node-a", tmp_path, auto_migrate=False).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value = '99.0.1' WHERE key = %s", (OLDEST_CODE,))
        with pytest.raises(ConfigError, match=r"folderseal 99\.0\.1 or newer") as refused:
            PostgresStore.open(url, "node-a", tmp_path, auto_migrate=True)
        assert refused.value.exit_code == 78
        with pytest.raises(ConfigError, match=r"folderseal 99\.0\.1 or newer"):
            PostgresStore.reading(url, "status", tmp_path)
