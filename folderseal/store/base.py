"""What every backend of the store shares: guarded writes, the events they record, the
leases a connection holds, and the meta record.

Every operation of the store is written once, in this module's subclasses (files,
batches, retries, reports), on top of named queries: :meth:`StoreBase._run` runs the query
of that name (its SQL in ``sql/queries.sql`` for :class:`~folderseal.store.sqlite.SqliteStore`,
with PostgreSQL's overrides in ``sql/postgresql/queries.sql`` for
:class:`~folderseal.store.postgres.PostgresStore`, a Python function of the same name for
:class:`~folderseal.store.memory.MemoryStore`). So every backend raises the same errors in
the same cases and records the same events. Times are the store's ``:now``
(:meth:`StoreBase._now`) and what SQL derives from it, never computed beside it in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from folderseal.core.errors import LeaseLost, StateConflict, StoreError
from folderseal.core.model import FileState, path_text
from folderseal.store.leases import Leases

ALL = 1 << 62  # a query's limit that limits nothing


class Cursor(Protocol):
    """What a named query answers: rows (by column name or position) and, for a write,
    how many rows it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class StoreBase:
    """One connection to a store, for one thread: the plumbing every operation uses."""

    def __init__(self, node: str, clock: Callable[[], float], leases: Leases) -> None:
        self.node = node
        self.clock = clock
        self.instance = ""  # the instance register_node took the node name for
        self._leases = leases  # shared by this process's connections as this node
        self._holding: str | None = None  # the batch whose step writes (holding())

    @property
    def leases(self) -> Leases:
        """The leases this process holds as this node (shared by its connections)."""
        return self._leases

    def _leases_for(self, node: str | None) -> Leases:
        """The leases a new connection as ``node`` shares: this one's for the same node
        (another thread of this process), none for another node."""
        if node in (None, self.node):
            return self._leases
        return Leases(self._leases.seconds, self._leases.clock)

    @contextmanager
    def holding(self, batch_id: str) -> Iterator[None]:
        """Within: a step of ``batch_id`` writes, so each write transaction first checks
        that this connection still holds the batch's lease (:meth:`_fence_write`). The
        writes about its files (results, output names, states, attempts, provider
        answers) are then fenced as the batch's own are; a node that lost the lease
        stops at its next write (LeaseLost)."""
        self._holding = batch_id
        try:
            yield
        finally:
            self._holding = None

    def _fence_write(self) -> None:
        """The first statement of a write transaction inside :meth:`holding`: nobody took
        the batch over from this holder, and nobody can until the transaction ends (in
        PostgreSQL the batch's row stays locked); else LeaseLost."""
        batch_id = self._holding
        if batch_id is None:
            return
        lease = self._leases.get(batch_id)
        if lease is None or self._run("hold_batch", id=batch_id,
                                      holder=lease.holder).fetchone() is None:
            raise LeaseLost(f"batch {batch_id} was taken over; this node leaves it to the "
                            "node that holds it now")

    # -- what a backend provides ----------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction; nested uses join the outer one. Its first statement is
        :meth:`_fence_write`."""
        raise NotImplementedError

    def unsynced_transaction(self) -> AbstractContextManager[None]:
        """A write transaction whose commit is not waited on to reach the disk: it
        survives the daemon's crash (the database has it), not always a power cut. Only
        for what may be lost so; joined to an outer transaction, it is as durable as
        that one. A backend without such commits makes it an ordinary transaction."""
        return self.transaction()

    def _run(self, name: str, **params: Any) -> Cursor:
        """Run the named query with ``params``."""
        raise NotImplementedError

    @property
    def schema_version(self) -> int:
        """The newest migration this code has for the backend (nodes record it)."""
        return 0

    def _now(self) -> float | None:
        """The ``:now`` a query stamps and compares with: the store's clock. A backend
        whose SQL reads the database's clock instead gives None (its queries have no
        ``:now`` left), so that no time of this host is compared with another's."""
        return self.clock()

    # -- starts and recover, one at a time on a shared store ------------------------
    # A store one daemon holds alone (SQLite, the in-memory fake) needs no lock: the state
    # folder's lock already keeps every other daemon and `recover` out.

    def lock_node_starts(self) -> bool:
        """Inside a transaction: wait until no other node is between its start check and
        its register, and hold the others off until the transaction ends; False (nothing
        held) while `folderseal recover` runs on the store."""
        return True

    def lock_recover(self) -> bool:
        """Take the store for one `folderseal recover` until :meth:`unlock_recover` (or
        close); False while another recover holds it or a node is starting."""
        return True

    def unlock_recover(self) -> None:
        """Let go of what :meth:`lock_recover` took."""

    # -- plumbing -------------------------------------------------------------

    def _guarded(self, name: str, error: type[StoreError], what: str, **params: Any) -> None:
        if self._run(name, **params).rowcount != 1:
            raise error(what)

    def event(self, kind: str, *, batch_id: str | None = None, file_id: str | None = None,
              from_state: str | None = None, to_state: str | None = None,
              detail: str | None = None) -> None:
        """Record one event (a transition, a claim, an attempt, a finding)."""
        lease = None if batch_id is None else self._leases.get(batch_id)
        self._run("insert_event", now=self._now(), node=self.node, batch_id=batch_id,
                  file_id=file_id, kind=kind, from_state=from_state, to_state=to_state,
                  detail=None if detail is None else path_text(detail),
                  epoch=None if lease is None else lease.epoch)

    # -- meta -----------------------------------------------------------------

    def _get_meta(self, key: str) -> str | None:
        row = self._run("get_meta", key=key).fetchone()
        return None if row is None else str(row[0])

    @property
    def store_id(self) -> str:
        """The store's random id, made when it was created (work folders name it)."""
        value = self._get_meta("store_id")
        if value is None:
            raise StoreError("the store has no id; it was not created by folderseal")
        return value

    # -- the state of a file ----------------------------------------------------

    def set_file_state(self, file_id: str, from_state: FileState, to_state: FileState,
                       batch_id: str | None = None, detail: str | None = None) -> None:
        """Move a file from ``from_state`` (StateConflict if it is not in it) to
        ``to_state``; a file done, failed or retried gives its planned names back."""
        with self.transaction():
            self._guarded("set_file_state", StateConflict,
                          f"file {file_id} is not {from_state}", id=file_id,
                          from_state=from_state, to_state=to_state, now=self._now())
            if to_state in (FileState.DONE, FileState.FAILED, FileState.RETRIED):
                self._run("release_names", file_id=file_id)  # on disk now, or given up
            self.event("file.state", file_id=file_id, batch_id=batch_id, from_state=from_state,
                       to_state=to_state, detail=detail)
