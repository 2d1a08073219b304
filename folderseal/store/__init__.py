"""The store: the authority on what happened to every file and batch.

:class:`Store` is what the rest of folderseal asks of it. Three backends keep that
promise and pass the same contract tests: :class:`~folderseal.store.sqlite.SqliteStore`
(SQLite in WAL mode, in the state folder: what one node runs on),
:class:`~folderseal.store.postgres.PostgresStore` (one PostgreSQL database shared by the
nodes of a fleet, on the database's clock) and
:class:`~folderseal.store.memory.MemoryStore` (plain dicts, for tests of the parts
above it). The store only executes storage operations; what they mean for a batch
lives in :mod:`folderseal.batches.machine`.

A store object is one connection, for one thread; :meth:`Store.connect` opens another
to the same store. Guarded writes raise :class:`~folderseal.core.errors.StateConflict`
(the record is not in the state the caller expects) or
:class:`~folderseal.core.errors.LeaseLost` (this connection no longer holds the batch's
lease) instead of passing silently, and each change records its event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from folderseal.core.model import (
    BatchRecord,
    BatchState,
    DocumentResult,
    Event,
    FileRecord,
    FileState,
)
from folderseal.store.base import ALL
from folderseal.store.leases import Leases

__all__ = ["LEASE_SECONDS", "ActiveBatch", "EventRecord", "Store", "new_id"]

LEASE_SECONDS = 30.0  # [store] lease_seconds: how long a batch stays taken without renewal


def new_id() -> str:
    """A sortable unique id: 12 hex digits of milliseconds, then 12 random ones."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class ActiveBatch:
    """A batch not finished yet, as ``folderseal status`` lists it."""

    batch: BatchRecord
    files: int                # how many files it holds
    progress: float | None    # how far the provider says it is (0-100), if it says


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One recorded event, as the store keeps it."""

    at: float
    node: str
    batch_id: str | None
    file_id: str | None
    kind: str
    from_state: str | None
    to_state: str | None
    detail: str | None
    epoch: int | None = None  # the epoch of the lease its writer held on the batch, if any


class Store(Protocol):
    """One connection to the store, for one thread.

    The protocol lists every store operation the package uses: the contract is this wide on
    purpose, and tests/unit/store_contract/ runs all of it on every backend."""

    node: str                       # this daemon's node name; leases carry it
    instance: str                   # whose heartbeats these are (register_node)

    @property
    def leases(self) -> Leases:
        """The leases this process holds as this node, shared by its connections."""
    clock: Callable[[], float]      # the time every record is stamped with

    # -- the connection ---------------------------------------------------------

    @property
    def store_id(self) -> str:
        """The store's random id, made when it was created (work folders name it)."""

    @property
    def state_dir(self) -> Path:
        """The state folder the store belongs to (the retry lock lives there)."""

    def connect(self, node: str | None = None, *, handed_over: bool = False) -> Store:
        """Another connection to the same store, for another thread (or node).

        ``handed_over``: it is opened on this thread and then used by one other thread only
        (a folder's intake thread, whose parts are built before it starts)."""

    def close(self) -> None:
        """Close this connection."""

    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction: all of it or nothing; nested uses join the outer one."""

    def holding(self, batch_id: str) -> AbstractContextManager[None]:
        """Within: every write transaction first checks that this connection still holds
        the batch's lease (LeaseLost if not): a step's writes are fenced."""

    def event(self, kind: str, *, batch_id: str | None = None, file_id: str | None = None,
              from_state: str | None = None, to_state: str | None = None,
              detail: str | None = None) -> None:
        """Record one event (a transition, a claim, an attempt, a finding)."""

    def why_unavailable(self) -> str | None:
        """Why the store does not answer a read now (None: it does); any thread may ask."""

    def lock_node_starts(self) -> bool:
        """Inside a transaction: wait until no other node is between its start check and
        its register, and hold the others off until the transaction ends; False while
        `folderseal recover` runs on the store. Always True on a store one daemon holds
        alone (SQLite: the state folder's lock keeps the others out)."""

    def lock_recover(self) -> bool:
        """Take the store for one `folderseal recover` until :meth:`unlock_recover` (or
        close); False while another recover holds it or a node is starting."""

    def unlock_recover(self) -> None:
        """Let go of what :meth:`lock_recover` took."""

    # -- files ------------------------------------------------------------------

    def add_claim(self, *, id: str, folder: str, source: str, dev: int, ino: int, size: int,
                  mtime_ns: int, sha256: str | None, seen_at: float) -> None:
        """Record one claimed file, CLAIMED, claimed now."""

    def add_claims(self, rows: list[dict[str, Any]]) -> list[str]:
        """Record files this node claimed (keys as :meth:`add_claim`'s arguments) in one
        transaction; the ids another node had recorded already (they stay its)."""

    def file(self, file_id: str) -> FileRecord | None:
        """The file of that id, if the store has it."""

    def files_in_state(self, folder: str, state: FileState) -> list[FileRecord]:
        """The files of ``folder`` in ``state``, in the order they were claimed."""

    def unfinished_claims(self, folder: str) -> list[FileRecord]:
        """This node's claims left half done: never hashed, or rejected but not yet in
        errors."""

    def own_claims(self, folder: str, limit: int = ALL) -> list[FileRecord]:
        """This node's hashed claims of ``folder``, in the order they were claimed (the
        first ``limit`` of them)."""

    def adopt_claims(self, folder: str, alive_seconds: float) -> int:
        """Make this node's the unbatched claims of ``folder`` of every node silent for
        ``alive_seconds`` on the store's clock (and those of no node); how many."""

    def files_of_batch(self, batch_id: str) -> list[FileRecord]:
        """The files of a batch, in the order of their entry names."""

    def failed_files(self) -> list[FileRecord]:
        """Every FAILED file, the longest failed first."""

    def recent_claims(self, folder: str, since: float) -> list[tuple[str, str, float]]:
        """(id, source, claimed_at) of the files of ``folder`` claimed after ``since``."""

    def file_ids(self, folder: str) -> set[str]:
        """The ids of every file of ``folder``."""

    def known_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` the store has a file for."""

    def count_in_flight(self, folder: str) -> int:
        """How many files of ``folder`` are claimed and not yet delivered."""

    def count_by_state(self) -> dict[str, dict[str, int]]:
        """folder → file state → how many files of that folder are in it."""

    def delivered_twin(self, record: FileRecord) -> FileRecord | None:
        """A published or done file of the same folder with the same input hash."""

    def set_file_state(self, file_id: str, from_state: FileState, to_state: FileState,
                       batch_id: str | None = None, detail: str | None = None) -> None:
        """Move a file from ``from_state`` to ``to_state`` (StateConflict if it is not in
        ``from_state``); done, failed or retried, its planned names are free again."""

    def set_file_result(self, file_id: str, from_state: FileState, result: DocumentResult,
                        batch_id: str | None = None) -> None:
        """Record the provider's result for a file: READY if it is good, else REJECTED."""

    def names_free(self, folder: str, area: str, file_id: str, paths: list[str]) -> bool:
        """True if no other unfinished file planned any of ``paths`` (in outbox|errors)."""

    def set_file_outputs(self, record: FileRecord, outputs: list[dict[str, Any]],
                         area: str) -> None:
        """Record the output names chosen for a file, and reserve them in ``area``."""

    def set_claim_hash(self, file_id: str, sha256: str, size: int, mtime_ns: int) -> None:
        """Record the hash, size and mtime of a claim of this node (StateConflict if it is
        not one, or no longer CLAIMED)."""

    def reject_claim(self, file_id: str, code: str, message: str) -> None:
        """A claim of this node that cannot be sealed: REJECTED with ``code`` and
        ``message`` (StateConflict if it is not one, or no longer CLAIMED)."""

    def note_remote_document(self, batch_id: str, file_id: str, note: dict[str, Any]) -> None:
        """Keep the provider's latest answer for a file waiting in a batch, durably."""

    def remote_documents(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """file id → the provider's latest answer for it, of the files of a batch."""

    # -- batches and their leases -------------------------------------------------

    def create_batch(self, *, batch_id: str, folder: str, provider: str,
                   entries: list[tuple[str, str]]) -> None:
        """Record a batch and the entry name of each of its CLAIMED files, in one transaction."""

    def restore_batch(self, *, batch_id: str, folder: str, provider: str, state: BatchState,
                    remote_id: str | None, files: list[dict[str, Any]], why: str,
                    publish_key: str | None = None) -> None:
        """Record again a batch a lost store knew (``folderseal recover``), with its files."""

    def batch(self, batch_id: str) -> BatchRecord | None:
        """The batch of that id, if the store has it."""

    def batch_ids(self) -> set[str]:
        """The ids of every batch."""

    def open_batch_owners(self) -> list[tuple[str, str, int]]:
        """(folder, provider, count) of the batches not finished yet."""

    def resume_batch(self, batch: BatchRecord, state: BatchState, why: str) -> None:
        """``folderseal recover``: move a batch on to ``state``, due at once, unleased."""

    def acquire_batch(self, busy: frozenset[str] = frozenset()) -> BatchRecord | None:
        """Take the lease on the batch due first, skipping ``busy`` ones (None: none due)."""

    def next_due(self) -> float | None:
        """When the next unleased batch is due (None: none is)."""

    def renew_lease(self, batch_id: str, wait: bool = True) -> None:
        """Extend this connection's lease on a batch (LeaseLost if another took it);
        unless ``wait``, not while a write of the batch's step holds its row (nothing is
        done then: that holder is at work)."""

    def keep_lease(self, batch_id: str) -> None:
        """Make sure this connection keeps the batch's lease a while yet (LeaseLost if not)."""

    def transition(self, batch: BatchRecord, to_state: BatchState, detail: str | None = None,
                   remote_id: str | None = None) -> None:
        """Move a batch on from the state it is in, guarded by that state and the lease."""

    def set_package(self, batch: BatchRecord, sha256: str, size: int) -> None:
        """Record the hash and size of a BATCHED batch's package (lease held)."""

    def fail_batch(self, batch: BatchRecord, code: str, message: str) -> None:
        """Mark a batch FAILED and each of its unfinished files REJECTED with the reason."""

    def release(self, batch: BatchRecord, next_attempt_at: float | None) -> None:
        """Let go of the batch's lease; it is due again at ``next_attempt_at`` (None: never)."""

    def postpone(self, batch: BatchRecord, delay: Callable[[int], float], code: str,
                 message: str) -> tuple[int, float]:
        """Count a transient failure and release the batch; returns attempts and next time."""

    def release_node_leases(self, every: bool = True) -> int:
        """At start: void the leases this node held before a crash (only the lapsed ones
        unless ``every``); how many."""

    def begin_attempts(self, batch: BatchRecord, file_ids: list[str]) -> list[int]:
        """Count an attempt at each file of the batch before it is made; the counts."""

    def forgive_attempts(self, batch: BatchRecord, file_ids: list[str]) -> None:
        """Take back one attempt of each file (it ended in a transient failure)."""

    # -- what a batch went through with its provider ------------------------------

    def note_upload(self, batch: BatchRecord, remote_id: str) -> None:
        """Record, durably, that an upload to ``remote_id`` is about to be sent."""

    def upload_sent_at(self, batch_id: str, remote_id: str) -> float | None:
        """When an upload to ``remote_id`` was first about to be sent, if ever."""

    def abandon(self, batch: BatchRecord, remote_id: str, *, lost_answer: bool, why: str,
                keep_attempts: bool = False) -> None:
        """A remote batch abandoned before accept: back to CREATED with ``remote_id``;
        its attempts start again from 0 unless ``keep_attempts``."""

    def abandons(self, batch_id: str) -> tuple[int, int]:
        """The remote batches a batch abandoned before accept: (answers lost, mismatches)."""

    def set_progress(self, batch: BatchRecord, progress: float) -> None:
        """How far the provider says the started batch is (0-100)."""

    def progress(self, batch_id: str) -> float | None:
        """The progress last recorded for a batch, if any."""

    def set_publish_key(self, batch: BatchRecord, key: str | None) -> None:
        """The name or key the batch's file is published under (None: removed)."""

    def publish_keys(self) -> set[str]:
        """Every publish key a batch still records: what must not be tidied away."""

    def set_remote_id(self, batch: BatchRecord, remote_id: str) -> None:
        """The remote batch an accept created, as the provider answered."""

    def batch_transitions(self, batch_id: str) -> list[tuple[str, float]]:
        """(state, when) of each transition of a batch, in order."""

    def batch_history(self, batch_id: str) -> list[Event]:
        """The batch's transitions and its files', in order."""

    # -- folderseal retry ---------------------------------------------------------

    def reopen_batch(self, batch: BatchRecord, to_state: BatchState) -> None:
        """A failed (or finished) unleased batch goes back to ``to_state``, due at once."""

    def wake_batch(self, batch_id: str) -> bool:
        """A batch waiting for its next attempt is due now; False if it was not waiting."""

    def begin_retry(self, plans: list[tuple[FileRecord, dict[str, Any]]]) -> None:
        """Record a retry's intent: each failed file RETRYING, with where it goes."""

    def finish_batch_retry(self, batch: BatchRecord, file_ids: list[str],
                           to_state: BatchState) -> None:
        """The retried files wait in their batch again, and the batch is due at once."""

    def reopen_file(self, file_id: str, batch_id: str) -> None:
        """A retried file of a batch waits in that batch again."""

    def undo_retry(self, file_ids: list[str], why: str) -> None:
        """Retried files whose moves were undone are FAILED again, in one transaction."""

    def set_error_place(self, record: FileRecord, place: dict[str, Any]) -> None:
        """Record what is known now of a failure's original in the errors folder."""

    # -- the daemons ---------------------------------------------------------------

    def register_node(self, instance: str, pid: int, started_at: float,
                      alive_seconds: float) -> bool:
        """Take the node name for ``instance``, at start (NodeNameTaken while another
        instance of the name beat within ``alive_seconds``); True if it was this
        instance's before, or nobody's."""

    def heartbeat(self, pid: int, started_at: float, notes: dict[str, Any]) -> None:
        """Record that this node's daemon is alive, with its notes for status
        (NodeNameTaken if another instance took the name meanwhile)."""

    def nodes(self) -> list[dict[str, Any]]:
        """Each node's last heartbeat: node, pid, started_at, heartbeat_at, notes,
        instance, version, schema_version."""

    # -- what status reads -----------------------------------------------------------

    def count_batches_by_state(self) -> dict[str, dict[str, int]]:
        """folder → batch state → how many batches of that folder are in it."""

    def claims_by_node(self) -> dict[str | None, int]:
        """node → how many of its claims wait outside a batch (None: claims of no node)."""

    def active_batches(self, folder: str) -> list[ActiveBatch]:
        """The batches of ``folder`` not finished or due again, the oldest first."""

    def last_changed(self, folder: str, state: FileState,
                     limit: int) -> list[tuple[FileRecord, float]]:
        """(record, when it last changed) of files of ``folder`` in ``state``, latest first."""

    def records_failed(self, folder: str, limit: int) -> list[tuple[str, str, int, float]]:
        """(id, source, how many, when) of delivered files with records the provider
        could not load, latest first."""

    def oldest_in_flight(self, folder: str) -> float | None:
        """When the oldest file :meth:`count_in_flight` counts was claimed (None: none)."""

    def suspected_fragments(self, folder: str,
                            since: float) -> list[tuple[str, str, float, str | None]]:
        """(the earlier claim's id and source, when, why) of each suspected fragment
        since ``since``, newest first."""

    def outputs_in_state(self, folder: str, state: FileState) -> list[tuple[dict[str, Any], ...]]:
        """The outputs planned for each file of ``folder`` in ``state``."""

    def changes_per_minute(self, folder: str, state: FileState, now: float,
                           minutes: int) -> list[int]:
        """Files of ``folder`` in ``state`` that last changed in each minute before
        ``now``, the oldest minute first."""

    def count_stale(self, folder: str, state: FileState, before: float) -> int:
        """How many files of ``folder`` are in ``state`` and last changed before ``before``."""

    def events(self, *, batch_id: str | None = None, file_id: str | None = None,
               kind: str | None = None) -> list[EventRecord]:
        """The recorded events that match every filter given, in the order they happened."""
