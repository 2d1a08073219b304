"""The store in memory: a fake that keeps the store's promise without a file, for tests of
the parts above it (the state machine, intake, claim, sink, recover).

It runs the very operations the SQLite store runs (:mod:`folderseal.store.files`,
``batches``, ``retries``, ``reports``), so it raises the same errors (StateConflict,
LeaseLost) in the same cases and records the same events; only the queries underneath
are plain Python on dicts and lists (:mod:`.file_queries`, ``batch_queries``,
``report_queries``), and
the contract tests run every promise against every backend. Like SQLite's, a transaction is all
or nothing and one at a time: a lock shared by every connection to the store serialises
them, and a transaction that raises puts the tables back as they were.

    store = MemoryStore("node-a", clock=clock, state_dir=tmp_path)
    other = store.connect("node-b")   # the same tables, leases of its own
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from folderseal.core.errors import StoreError
from folderseal.store import LEASE_SECONDS, Store
from folderseal.store.batches import BatchRecords
from folderseal.store.leases import Leases
from folderseal.store.memory import batch_queries, file_queries, report_queries  # noqa: F401 - each registers its queries
from folderseal.store.memory.tables import QUERIES, Result, Tables
from folderseal.store.reports import ReportQueries
from folderseal.store.retries import RetryRecords

__all__ = ["QUERIES", "MemoryStore"]


class _Shared:
    """What every connection to one in-memory store shares."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables = Tables(meta={"store_id": uuid.uuid4().hex})


class MemoryStore(BatchRecords, RetryRecords, ReportQueries):
    """One connection to an in-memory store; :meth:`connect` opens another to it."""

    def __init__(self, node: str = "memory", clock: Callable[[], float] = time.time, *,
                 state_dir: Path | None = None, _shared: _Shared | None = None,
                 leases: Leases | None = None) -> None:
        super().__init__(node, clock, leases or Leases(LEASE_SECONDS))
        self._state_dir = state_dir
        self._shared = _Shared() if _shared is None else _shared
        self._in_transaction = False

    def connect(self, node: str | None = None, *, handed_over: bool = False) -> Self:
        """Another connection to the same tables (for another thread, or node)."""
        return type(self)(node or self.node, self.clock, state_dir=self._state_dir,
                          _shared=self._shared, leases=self._leases_for(node))

    def close(self) -> None:
        """Nothing to close: the tables live as long as a connection to them."""

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            raise StoreError("this in-memory store was given no state folder: pass "
                             "state_dir= to MemoryStore for the parts that lock in it")
        return self._state_dir

    def why_unavailable(self) -> str | None:
        return None  # memory always answers

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses join the outer one."""
        if self._in_transaction:
            yield
            return
        with self._shared.lock:
            saved = self._shared.tables.copy()
            self._in_transaction = True
            try:
                self._fence_write()
                yield
            except BaseException:
                self._shared.tables = saved
                raise
            finally:
                self._in_transaction = False

    def _run(self, name: str, **params: Any) -> Result:
        with self._shared.lock:
            return QUERIES[name](self._shared.tables, **params)


if TYPE_CHECKING:  # mypy holds the fake to the protocol
    _CONFORMS: type[Store] = MemoryStore
