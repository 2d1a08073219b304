"""Which store a configuration names, opened for what the caller does with it.

``[store] url = ""`` is SQLite in ``state_dir`` (one node); a ``postgresql://`` URL is a
database several nodes share. The daemon, ``recover`` and ``retry`` write; ``status``
only reads; ``folderseal migrate`` creates or upgrades the schema. The PostgreSQL driver
is imported only when a URL names it, so a SQLite node never loads it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from folderseal.core import statelock
from folderseal.core.config import Settings
from folderseal.core.errors import ConfigError
from folderseal.store import Store
from folderseal.store.sqlite import READ_TIMEOUT, SqliteStore, migrations


def open_store(settings: Settings, node: str | None = None, *, check: bool = False) -> Store:
    """The store to write, as ``node`` (default: this node's name). On SQLite it is
    made and migrated if needed (``check`` reads every page first); on PostgreSQL it is
    migrated only when ``auto_migrate`` says so, else refused until ``folderseal
    migrate`` ran (exit 78)."""
    node = node or settings.node_name
    url = settings.store.database_url()
    if url is None:
        return SqliteStore.open(settings.state_dir, node, check=check,
                                lease_seconds=settings.store.lease_seconds)
    from folderseal.store.postgres import PostgresStore
    statelock.prepare(settings.state_dir)  # the node's own files live there still
    return PostgresStore.open(url, node, settings.state_dir,
                              auto_migrate=settings.store.auto_migrate,
                              lease_seconds=settings.store.lease_seconds,
                              url_source=_url_source(settings))


def reading_store(settings: Settings) -> Store | None:
    """The store opened only to read it (``folderseal status``), or None when a SQLite
    store was never made (no daemon ever ran)."""
    url = settings.store.database_url()
    if url is None:
        if not settings.database.exists():
            return None
        return SqliteStore.reading(settings.database, settings.node_name)
    from folderseal.store.postgres import PostgresStore
    return PostgresStore.reading(url, settings.node_name, settings.state_dir,
                                 url_source=_url_source(settings))


def _url_source(settings: Settings) -> Callable[[], str] | None:
    """What gives the URL again for each new connection: ``[store] url_file``, read anew
    (a rotated password is used without a restart); None for a URL in the config."""
    if settings.store.url_file is None:
        return None

    def read() -> str:
        url = settings.store.database_url()
        if url is None:  # an empty file now: not a URL
            raise ConfigError(f"store.url_file {settings.store.url_file} is empty")
        return url
    return read


def store_place(settings: Settings) -> str:
    """Where the store is, for messages: the SQLite file, or the database's host and
    name (never its password)."""
    url = settings.store.database_url()
    if url is None:
        return str(settings.database)
    parts = urlsplit(url)
    return f"PostgreSQL {parts.hostname or 'localhost'}{parts.path}"


def migrate(settings: Settings) -> list[int]:
    """Create or upgrade the schema; the numbers of the migrations applied."""
    url = settings.store.database_url()
    if url is None:
        before = sqlite_version(settings.database)
        SqliteStore.open(settings.state_dir, settings.node_name).close()  # migrates
        after = sqlite_version(settings.database)
        return [number for number, _ in migrations() if before < number <= after]
    from folderseal.store import postgres
    return postgres.migrate(url)


def sqlite_version(path: Path) -> int:
    """The schema version of the SQLite store at ``path`` (0: none yet)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=READ_TIMEOUT)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()
