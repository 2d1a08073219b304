"""What the store's contract tests share: each runs once on each backend (``BACKENDS``:
the SQLite store, the PostgreSQL store and the in-memory one), so neither the fake nor one
real backend can drift from the others. The fixtures built from them are in
``tests/unit/store_contract/conftest.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg

from folderseal.core.model import BatchRecord
from folderseal.store import LEASE_SECONDS, Store
from folderseal.store.leases import Leases
from folderseal.store.memory import MemoryStore
from folderseal.store.postgres import PostgresStore, migrate
from folderseal.store.sqlite import SqliteStore
from tests.postgres import own_schema

# What a backend raises for a second row with the same key (the fake raises SQLite's).
DUPLICATE = (sqlite3.IntegrityError, psycopg.errors.UniqueViolation)

T0 = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """Connections to one store of one backend, each for a node; all closed at the end."""

    def __init__(self, kind: str, state_dir: Path, clock: Clock, url: str = "") -> None:
        self.kind = kind
        self.clock = clock
        self.state_dir = state_dir
        self.path = state_dir / "folderseal.sqlite"
        self.url = url  # postgres: the test's own schema, migrated
        # The hand clock stands for this host's own clock as well (the leases' deadlines).
        self._memory = MemoryStore("first", clock=clock, state_dir=state_dir,
                                   leases=Leases(LEASE_SECONDS, clock))
        self._opened: list[Store] = []

    def open(self, node: str) -> Store:
        """A new connection to the same store, as ``node``."""
        opened: Store
        if self.kind == "sqlite":
            opened = SqliteStore(self.path, node, clock=self.clock,
                                 leases=Leases(LEASE_SECONDS, self.clock))
        elif self.kind == "postgres":
            opened = PostgresStore(self.url, node, self.state_dir, clock=self.clock,
                                   leases=Leases(LEASE_SECONDS, self.clock))
        else:
            opened = self._memory.connect(node)
        self._opened.append(opened)
        return opened

    def close(self) -> None:
        for opened in self._opened:
            opened.close()


BACKENDS = ["sqlite", "postgres", "memory"]


def opened(kind: str, state_dir: Path, server: str = "") -> Iterator[Backend]:
    """A store of that backend, on a clock the test moves; closed after. SQLite's is in
    ``state_dir``; PostgreSQL's in a schema of its own on ``server``, dropped after."""
    with ExitStack() as stack:
        url = ""
        if kind == "postgres":
            url = stack.enter_context(own_schema(server))
            migrate(url)
        backend = Backend(kind, state_dir, Clock(), url)
        stack.callback(backend.close)
        yield backend


def claim(store: Store, file_id: str, source: str = "scan.pdf", size: int = 100,
          folder: str = "scans") -> None:
    store.add_claim(id=file_id, folder=folder, source=source, dev=1,
                    ino=hash(file_id) % 10**6, size=size, mtime_ns=5, sha256="ab" * 32,
                    seen_at=store.clock() - 1)


def formed_batch(store: Store, batch_id: str = "job1", n: int = 2) -> BatchRecord:
    ids = [f"{batch_id}-f{i}" for i in range(n)]
    for file_id in ids:
        claim(store, file_id, source=f"{file_id}.pdf")
    store.create_batch(batch_id=batch_id, folder="scans", provider="local",
                     entries=[(f, f"{i:04d}_{f}.pdf") for i, f in enumerate(ids)])
    batch = store.batch(batch_id)
    assert batch is not None
    return batch


def acquired(store: Store) -> BatchRecord:
    batch = store.acquire_batch()
    assert batch is not None
    return batch


def batch_events(store: Store, batch_id: str) -> list[tuple[str | None, str | None]]:
    return [(e.from_state, e.to_state) for e in store.events(batch_id=batch_id, kind="batch.state")]
