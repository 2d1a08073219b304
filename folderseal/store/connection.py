"""One connection to the store: SQLite in WAL mode, its schema and queries, transactions,
guarded writes and their events.

Each thread opens its own connection (sqlite3 connections are not shared between
threads). Writes run in ``BEGIN IMMEDIATE`` transactions; a guarded write that matches
zero rows raises :class:`StateConflict` or :class:`LeaseLost` instead of passing
silently. ``synchronous = FULL`` makes every commit durable before the step after it
starts (docs/design.md's crash table depends on it). SQL is data: the schema, the numbered
migrations and every query live in ``sql/``.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Self

from folderseal.core.errors import ConfigError, StateConflict, StateUnavailable, StoreError
from folderseal.core.model import FileState, path_text
from folderseal.service import statelock

# SQLite's words for a state folder that cannot take writes (or is busy too long).
_UNAVAILABLE = ("disk is full", "disk I/O error", "readonly database", "database is locked",
                "unable to open database file")
_SQL = resources.files("folderseal.store") / "sql"


def _load_queries() -> dict[str, str]:
    text = (_SQL / "queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip()
    return queries


def migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts, in order."""
    found = []
    for item in (_SQL / "migrations").iterdir():
        match = re.match(r"^(\d+)_.*\.sql$", item.name)
        if match:
            found.append((int(match.group(1)), item.read_text(encoding="utf-8")))
    return sorted(found)


QUERIES = _load_queries()


def new_id() -> str:
    """A sortable unique id: 12 hex digits of milliseconds, then 12 random ones."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:12]}"


class Connection:
    """One connection to the SQLite store, for one thread: the plumbing every part of
    the store uses, and the one guarded change of a file's state."""

    def __init__(self, path: Path, node: str, clock: Callable[[], float] = time.time,
                 check: bool = False) -> None:
        self.path = path
        self.node = node
        self.clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._in_transaction = False
        # job id → (holder, expiry) of the leases this connection holds
        self._leases: dict[str, tuple[str, float]] = {}
        try:
            self._exec("PRAGMA journal_mode = WAL")
            self._exec("PRAGMA synchronous = FULL")
            self._exec("PRAGMA foreign_keys = ON")
            self._migrate()
            if check:  # damage inside a page shows only when that page is read
                verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {verdict}")
        except sqlite3.DatabaseError as exc:  # not a database, or damaged
            self._db.close()
            raise ConfigError(
                f"the store {path} is damaged ({exc}). Move it aside (keep it for a "
                "post-mortem) and run 'folderseal recover' to rebuild the store from the "
                "work folders and the provider") from None

    @classmethod
    def open(cls, state_dir: Path, node: str, check: bool = False) -> Self:
        """The store of ``state_dir``; ``check`` reads every page first (at start)."""
        statelock.prepare(state_dir)  # made if missing; refused with the fix if unusable
        return cls(state_dir / "folderseal.sqlite", node, check=check)

    def close(self) -> None:
        self._db.close()

    @property
    def state_dir(self) -> Path:
        return self.path.parent

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

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._in_transaction:
            yield
            return
        self._exec("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
            self._exec("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

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

    def _guarded(self, name: str, error: type[StoreError], what: str, **params: Any) -> None:
        if self._run(name, **params).rowcount != 1:
            raise error(what)

    def event(self, kind: str, *, job_id: str | None = None, file_id: str | None = None,
              from_state: str | None = None, to_state: str | None = None,
              detail: str | None = None) -> None:
        self._run("insert_event", at=self.clock(), node=self.node, job_id=job_id,
                  file_id=file_id, kind=kind, from_state=from_state, to_state=to_state,
                  detail=None if detail is None else path_text(detail))

    # -- meta -----------------------------------------------------------------

    def _get_meta(self, key: str) -> str | None:
        row = self._run("get_meta", key=key).fetchone()
        return None if row is None else str(row[0])

    @property
    def store_id(self) -> str:
        value = self._get_meta("store_id")
        if value is None:
            raise StoreError("the store has no id; it was not created by folderseal")
        return value

    # -- the state of a file ----------------------------------------------------

    def set_file_state(self, file_id: str, from_state: FileState, to_state: FileState,
                       job_id: str | None = None, detail: str | None = None) -> None:
        with self.transaction():
            self._guarded("set_file_state", StateConflict,
                          f"file {file_id} is not {from_state}", id=file_id,
                          from_state=from_state, to_state=to_state, now=self.clock())
            if to_state in (FileState.DONE, FileState.FAILED, FileState.RETRIED):
                self._run("release_names", file_id=file_id)  # on disk now, or given up
            self.event("file.state", file_id=file_id, job_id=job_id, from_state=from_state,
                       to_state=to_state, detail=detail)
