"""The store on PostgreSQL: one database shared by the nodes of a fleet.

The operations are the ones every backend runs (files, batches, retries, reports); this
module runs their queries on PostgreSQL through psycopg 3. The SQL lives in ``sql/``: the
shared ``queries.sql`` with this dialect's overrides in ``sql/postgresql/queries.sql``, its
numbered migrations in ``sql/postgresql/migrations/`` and its bookkeeping in
``sql/postgresql/plumbing.sql``.

Time: a store opened without a clock (the daemon's) takes every time it writes or
compares from the database, ``clock_timestamp()``: each ``:now`` of its queries becomes
that expression, and times derived from it (a lease's expiry, a next attempt) are
computed in the same SQL, so no node's own clock is ever compared with a time another
node wrote. A store given a clock (tests) passes ``:now`` as a parameter instead.

Like SQLite's, a store object is one connection for one thread (:meth:`connect` opens
another). A connection the server or the network cut is opened again on the next use
outside a transaction; until then, and for a transaction it broke, the store raises
:class:`~folderseal.core.errors.StateUnavailable`. Given ``url_source`` (``[store]
url_file``), each new connection reads the URL again, so a rotated password is used
without a restart.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import psycopg

from folderseal import __version__
from folderseal.core.errors import ConfigError, StateUnavailable
from folderseal.store import LEASE_SECONDS, Store, pgconnect
from folderseal.store.batches import BatchRecords
from folderseal.store.leases import Leases
from folderseal.store.reports import ReportQueries
from folderseal.store.retries import RetryRecords
from folderseal.store.sqltext import (
    OLDEST_CODE,
    SQL,
    check_code_version,
    dialect_queries,
    read_migrations,
    read_queries,
)

_DIALECT = SQL / "postgresql"
HEALTH_TIMEOUT = 2.0  # /healthz waits this long for the server


def _uncommented(sql: str) -> str:
    """SQL without its whole-line comments (a ``:name`` in one is no parameter)."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def _psycopg(sql: str, now: str | None = None) -> str:
    """A query as psycopg takes it: ``:name`` → ``%(name)s`` (a ``::`` cast left alone),
    ``%`` doubled, whole-line comments dropped; with ``now``, each ``:now`` becomes it."""
    sql = _uncommented(sql)
    if now is not None:
        sql = re.sub(r"(?<![:\w]):now\b", now, sql)
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql.replace("%", "%%"))


def migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts of PostgreSQL, in order."""
    return read_migrations(_DIALECT / "migrations")


QUERIES = dialect_queries(_DIALECT / "queries.sql")  # as written, with :name parameters
_PLUMBING = read_queries(_DIALECT / "plumbing.sql")
DATABASE_NOW = _uncommented(_PLUMBING.pop("now"))  # what :now becomes on the database's clock
_ON_A_CLOCK = {name: _psycopg(sql) for name, sql in QUERIES.items()}
_ON_THE_DATABASE = {name: _psycopg(sql, DATABASE_NOW) for name, sql in QUERIES.items()}
_OWN = {name: _psycopg(sql, DATABASE_NOW) for name, sql in _PLUMBING.items()}


def on_the_database(file: Traversable) -> dict[str, str]:
    """The named statements of a file only PostgreSQL runs, as psycopg takes them, each
    :now the database's clock."""
    return {name: _psycopg(sql, DATABASE_NOW) for name, sql in read_queries(file).items()}


def migrate(url: str) -> list[int]:
    """Apply the migrations the store at ``url`` lacks, in one transaction; the numbers
    applied. Under an advisory lock: nodes migrating at once apply each one once."""
    applied: list[int] = []
    with pgconnect.connect(url, "migrate") as conn:
        try:
            with conn.transaction():
                conn.execute(_OWN["migrate_lock"], {})
                conn.execute(_OWN["create_migrations_table"], {})
                version = _one(conn.execute(_OWN["schema_version"], {}))
                for number, sql in migrations():
                    if number > version:
                        conn.execute(sql)  # no parameters: several statements at once
                        conn.execute(_OWN["record_migration"],
                                     {"version": number, "code": __version__})
                        applied.append(number)
                if _one(conn.execute(_ON_A_CLOCK["get_meta"], {"key": "store_id"})) is None:
                    conn.execute(_ON_A_CLOCK["set_meta"],
                                 {"key": "store_id", "value": uuid.uuid4().hex})
        except psycopg.OperationalError as exc:
            raise pgconnect.unavailable(url, exc) from None
    return applied


def _one(cursor: psycopg.Cursor[pgconnect.Row]) -> Any:
    row = cursor.fetchone()
    return None if row is None else row[0]


class PostgresStore(BatchRecords, RetryRecords, ReportQueries):
    """One connection to the PostgreSQL store, for one thread.

    ``state_dir`` is this node's own folder (the retry lock lives there): the store keeps
    nothing in it. ``clock`` None: every time is the database's (see the module's doc).

    Its own methods (over 15 with the store's) are the connection's plumbing: opening
    and checking the schema, transactions, reconnecting after a cut; they share the one
    connection's state, as :class:`~folderseal.store.sqlite.SqliteStore`'s do."""

    def __init__(self, url: str, node: str, state_dir: Path,
                 clock: Callable[[], float] | None = None, *, read_only: bool = False,
                 leases: Leases | None = None,
                 url_source: Callable[[], str] | None = None) -> None:
        super().__init__(node, self._database_time if clock is None else clock,
                         leases or Leases(LEASE_SECONDS))
        self._url = url
        self._url_source = url_source  # read again for each new connection (url_file)
        self._state_dir = state_dir
        self._own_clock = clock
        self._queries = _ON_THE_DATABASE if clock is None else _ON_A_CLOCK
        self._read_only = read_only
        self._in_transaction = False
        self._recover_locked = False  # lock_recover() holds the store on this session
        self._conn = pgconnect.connect(url, node, read_only=read_only,
                                       lease_seconds=self._leases.seconds)

    @classmethod
    def open(cls, url: str, node: str, state_dir: Path, *, auto_migrate: bool,
             lease_seconds: float = LEASE_SECONDS,
             url_source: Callable[[], str] | None = None) -> Self:
        """The store at ``url``, for the daemon: migrated first if ``auto_migrate``, else
        refused (ConfigError) unless ``folderseal migrate`` brought it to this version.
        ``url_source`` gives the URL again for each later connection (see the module)."""
        if auto_migrate:
            migrate(url)
        return cls(url, node, state_dir, leases=Leases(lease_seconds),
                   url_source=url_source)._checked()

    @classmethod
    def reading(cls, url: str, node: str, state_dir: Path,
                url_source: Callable[[], str] | None = None) -> Self:
        """The store at ``url``, opened only to read it (``folderseal status``): nothing is
        made, migrated or written (the server refuses writes on this connection)."""
        return cls(url, node, state_dir, read_only=True, url_source=url_source)._checked()

    def _checked(self) -> Self:
        """This store, if its schema is one this code can use; else closed, ConfigError."""
        where = f"PostgreSQL store {pgconnect.describe(self._url)}"
        try:
            latest = migrations()[-1][0]
            if not _one(self._exec(_OWN["has_schema"], {})):
                raise ConfigError(f"the {where} has no folderseal schema: run 'folderseal "
                                  "migrate' (or set [store] auto_migrate = true)")
            version = _one(self._exec(_OWN["schema_version"], {}))
            if version < latest:  # a newer schema is for the oldest_code check below
                raise ConfigError(
                    f"the {where} is at schema version {version} and this folderseal needs "
                    f"version {latest}: run 'folderseal migrate' (or set [store] "
                    "auto_migrate = true)")
            check_code_version(self._get_meta(OLDEST_CODE), where)
        except BaseException:
            self.close()
            raise
        return self

    def connect(self, node: str | None = None, *, handed_over: bool = False) -> Self:
        """Another connection to this store, for another thread (or another node); a
        psycopg connection may move between threads, so ``handed_over`` changes nothing."""
        return type(self)(self._fresh_url(), node or self.node, self._state_dir,
                          self._own_clock, read_only=self._read_only,
                          leases=self._leases_for(node), url_source=self._url_source)

    def close(self) -> None:
        self._conn.close()

    @property
    def schema_version(self) -> int:
        return migrations()[-1][0]

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    def lock_node_starts(self) -> bool:
        if not self._in_transaction:  # a transaction-level lock would end at once
            raise RuntimeError("lock_node_starts() is for inside a transaction")
        self._exec(_OWN["lock_node_starts"], {})
        return bool(_one(self._exec(_OWN["hold_off_recover"], {})))

    def lock_recover(self) -> bool:
        # A session lock: it ends with this connection, so a cut one is not opened again
        # (see _reconnect_if_cut).
        self._recover_locked = bool(_one(self._exec(_OWN["recover_lock"], {})))
        return self._recover_locked

    def unlock_recover(self) -> None:
        if self._recover_locked and not self._conn.broken:
            self._exec(_OWN["recover_unlock"], {})
        self._recover_locked = False

    def why_unavailable(self) -> str | None:
        """Why the store does not answer a read now (None: it does). A connection of its
        own, so any thread may ask; it waits HEALTH_TIMEOUT at most."""
        try:
            url = self._fresh_url()
            with pgconnect.connect(url, self.node, read_only=True, timeout=HEALTH_TIMEOUT,
                                   statement_timeout_ms=int(HEALTH_TIMEOUT * 1000)) as conn:
                conn.execute(self._queries["answers"], {}).fetchone()
        except (ConfigError, StateUnavailable, psycopg.Error) as exc:
            return pgconnect.masked(str(exc), self._url)
        return None

    # -- plumbing -------------------------------------------------------------

    def _fresh_url(self) -> str:
        """The URL for a new connection: read again from its source (``url_file``: a
        password rotated there is used from now on), else the one given."""
        if self._url_source is not None:
            try:
                self._url = self._url_source()
            except ConfigError as exc:  # a file being replaced, say: folderseal retries
                raise StateUnavailable(f"the PostgreSQL store's URL cannot be read again "
                                       f"({exc}); folderseal retries") from None
        return self._url

    def _database_time(self) -> float:
        """The database's clock, in epoch seconds: ``clock`` of a store given none."""
        return float(_one(self._exec(_OWN["database_time"], {})))

    def _now(self) -> float | None:
        return None if self._own_clock is None else self._own_clock()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._in_transaction:
            yield
            return
        self._reconnect_if_cut()
        self._in_transaction = True
        try:
            with self._unavailable_on_failure(), self._conn.transaction():
                self._fence_write()
                yield
        finally:
            self._in_transaction = False

    @contextmanager
    def unsynced_transaction(self) -> Iterator[None]:
        """A transaction committed with ``synchronous_commit = off`` (the server does not
        wait for its WAL to be flushed): see :meth:`StoreBase.unsynced_transaction`."""
        if self._in_transaction:
            yield
            return
        with self.transaction():
            self._conn.execute("SET LOCAL synchronous_commit = off")
            yield

    @contextmanager
    def _unavailable_on_failure(self) -> Iterator[None]:
        """A server gone, a network cut, a standby, a session the server ended because it
        sat idle in a transaction (this process paused): transient (StateUnavailable). A
        COMMIT that fails so has an unknown outcome: the caller reads again, never assumes."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction,
                psycopg.errors.IdleInTransactionSessionTimeout) as exc:
            raise pgconnect.unavailable(self._url, exc) from None

    def _reconnect_if_cut(self) -> None:
        """A connection cut under a previous call is opened again (a closed one is not),
        unless it held the recover lock: a node may have started since."""
        if self._conn.broken and self._recover_locked:
            raise ConfigError(
                f"the connection to the PostgreSQL store {pgconnect.describe(self._url)} was "
                "cut while `folderseal recover` held it, so nodes could start meanwhile: "
                "stop any node that did, then run `folderseal recover` again (it settles "
                "what is left)")
        if self._conn.broken:
            self._conn = pgconnect.connect(self._fresh_url(), self.node,
                                           read_only=self._read_only,
                                           lease_seconds=self._leases.seconds)

    def _exec(self, sql: str, params: dict[str, Any]) -> psycopg.Cursor[pgconnect.Row]:
        if not self._in_transaction:
            self._reconnect_if_cut()
        with self._unavailable_on_failure():
            return self._conn.execute(sql, params)

    def _run(self, name: str, **params: Any) -> psycopg.Cursor[pgconnect.Row]:
        return self._exec(self._queries[name], params)


if TYPE_CHECKING:  # mypy holds the backend to the protocol
    _CONFORMS: type[Store] = PostgresStore
