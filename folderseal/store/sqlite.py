"""The store on SQLite in WAL mode: the authority on what happened to every file.

Each thread opens its own :class:`SqliteStore` (sqlite3 connections are not shared
between threads; :meth:`SqliteStore.connect` opens another). Writes run in ``BEGIN
IMMEDIATE`` transactions; ``synchronous = FULL`` makes every commit durable before the
step after it starts (docs/design.md's crash table depends on it), but for the one
commit :meth:`SqliteStore.unsynced_transaction` makes (attempts counted). SQL is data:
the schema, the numbered migrations and every query live in ``sql/``. What the
operations mean is written once for every backend (files, batches, retries, reports);
this module runs them on SQLite.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from folderseal.core import statelock
from folderseal.core.errors import ConfigError, StateUnavailable
from folderseal.store import LEASE_SECONDS, Store
from folderseal.store.batches import BatchRecords
from folderseal.store.leases import Leases
from folderseal.store.reports import ReportQueries
from folderseal.store.retries import RetryRecords
from folderseal.store.sqltext import (
    OLDEST_CODE,
    SQL,
    check_code_version,
    read_migrations,
    read_queries,
)

# SQLite's words for a state folder that cannot take writes (or is busy too long).
_UNAVAILABLE = ("disk is full", "disk I/O error", "readonly database", "database is locked",
                "unable to open database file")
_SQL = SQL
FILE_NAME = "folderseal.sqlite"  # in the state folder
READ_TIMEOUT = 10.0   # status waits this long for a writer's lock
HEALTH_TIMEOUT = 2.0  # /healthz, likewise


def migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts, in order."""
    return read_migrations(_SQL / "migrations")


QUERIES = read_queries(_SQL / "queries.sql")


class SqliteStore(BatchRecords, RetryRecords, ReportQueries):
    """One connection to the SQLite store, for one thread."""

    def __init__(self, path: Path, node: str, clock: Callable[[], float] = time.time,
                 check: bool = False, *, read_only: bool = False,
                 leases: Leases | None = None, handed_over: bool = False) -> None:
        super().__init__(node, clock, leases or Leases(LEASE_SECONDS))
        self.path = path
        self._read_only = read_only
        self._in_transaction = False
        if read_only:  # nothing made, migrated or written: status runs beside the daemon
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=READ_TIMEOUT)
            self._db.row_factory = sqlite3.Row
            self._check_code(readable_only=True)
            return
        # sqlite3 refuses a connection on another thread than its own, unless it was
        # opened to be handed over (then only that thread uses it).
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0,
                                   check_same_thread=not handed_over)
        self._db.row_factory = sqlite3.Row
        try:
            self._exec("PRAGMA journal_mode = WAL")
            self._exec("PRAGMA synchronous = FULL")
            self._exec("PRAGMA foreign_keys = ON")
            self._migrate()
            if check:  # damage inside a page shows only when that page is read
                verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {verdict}")
            self._check_code()
        except sqlite3.DatabaseError as exc:  # not a database, or damaged
            self._db.close()
            raise ConfigError(
                f"the store {path} is damaged ({exc}). Move it aside (keep it for a "
                "post-mortem) and run 'folderseal recover' to rebuild the store from the "
                "work folders and the provider") from None

    @classmethod
    def open(cls, state_dir: Path, node: str, check: bool = False,
             lease_seconds: float = LEASE_SECONDS) -> Self:
        """The store of ``state_dir``; ``check`` reads every page first (at start)."""
        statelock.prepare(state_dir)  # made if missing; refused with the fix if unusable
        return cls(state_dir / FILE_NAME, node, check=check, leases=Leases(lease_seconds))

    @classmethod
    def reading(cls, path: Path, node: str) -> Self:
        """The store at ``path``, opened only to read it (``folderseal status``, with or
        without a daemon): nothing is made, migrated or written."""
        return cls(path, node, read_only=True)

    def connect(self, node: str | None = None, *, handed_over: bool = False) -> Self:
        """Another connection to this store, for another thread (or another node)."""
        return type(self)(self.path, node or self.node, self.clock, read_only=self._read_only,
                          leases=self._leases_for(node), handed_over=handed_over)

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return migrations()[-1][0]

    @property
    def state_dir(self) -> Path:
        return self.path.parent

    def why_unavailable(self) -> str | None:
        """Why the store does not answer a read now (None: it does). A connection of its
        own, so any thread may ask; it waits HEALTH_TIMEOUT at most."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=HEALTH_TIMEOUT)
            try:
                db.execute(QUERIES["answers"]).fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None

    # -- plumbing -------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        pending = [(n, sql) for n, sql in migrations() if n > version]
        if not pending:
            return
        with self.transaction():
            # Another process may have migrated while this one waited for the lock.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, sql in pending:
                if number > version:
                    for statement in sql.split(";\n"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number:d}")
            if self._get_meta("store_id") is None:
                self._run("set_meta", key="store_id", value=uuid.uuid4().hex)

    def _check_code(self, readable_only: bool = False) -> None:
        """Refuse (ConfigError) a schema a newer folderseal migrated for newer code only.
        ``readable_only``: a store that cannot be read yet says so later, on its first read."""
        try:
            oldest = self._get_meta(OLDEST_CODE)
        except sqlite3.Error:
            if not readable_only:
                raise
            return
        try:
            check_code_version(oldest, str(self.path))
        except ConfigError:
            self._db.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._in_transaction:
            yield
            return
        self._exec("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            self._fence_write()
            yield
            self._exec("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    @contextmanager
    def unsynced_transaction(self) -> Iterator[None]:
        """A transaction committed with ``synchronous = NORMAL`` (the WAL is not synced at
        its commit): see :meth:`StoreBase.unsynced_transaction`."""
        if self._in_transaction:
            yield
            return
        # Set outside the transaction (SQLite refuses it inside), for this commit only:
        # the connection is this thread's own.
        self._exec("PRAGMA synchronous = NORMAL")
        try:
            with self.transaction():
                yield
        finally:
            self._db.execute("PRAGMA synchronous = FULL")

    def _exec(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run SQL; a state folder that takes no writes is transient, not a crash."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if any(sign in text for sign in _UNAVAILABLE):
                raise StateUnavailable(
                    f"the state folder {self.path.parent} takes no writes now ({text}): "
                    "free space on it or repair its disk; folderseal retries") from None
            raise

    def _run(self, name: str, **params: Any) -> sqlite3.Cursor:
        return self._exec(QUERIES[name], params)


if TYPE_CHECKING:  # mypy holds the backend to the protocol
    _CONFORMS: type[Store] = SqliteStore
