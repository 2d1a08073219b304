"""The store's records of batches: their states, the leases on them, what each went through
with its provider, and the daemons' heartbeats.

Only the holder of a batch's lease moves it on: every write below is guarded by the
state it expects and by the lease, and one that matches nothing raises
:class:`StateConflict` or :class:`LeaseLost` instead of passing silently.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from folderseal import __version__
from folderseal.core.errors import LeaseLost, NodeNameTaken, StateConflict
from folderseal.core.model import BatchRecord, BatchState, DocumentResult, Event, FileState
from folderseal.core.redact import REDACTOR
from folderseal.store.files import FileRecords


class BatchRecords(FileRecords):
    """What the store knows of each batch, and the leases this connection holds.

    One method per store operation on batches: the store's contract is this wide, and each
    method is one named query."""

    def create_batch(self, *, batch_id: str, folder: str, provider: str,
                   entries: list[tuple[str, str]]) -> None:
        """Record a batch and the entry name of each of its files, in one transaction."""
        now = self._now()
        with self.transaction():
            self._run("insert_batch", id=batch_id, folder=folder, provider=provider, now=now)
            self.event("batch.created", batch_id=batch_id, to_state=BatchState.BATCHED,
                       detail=str(len(entries)))
            for file_id, entry in entries:
                self._guarded("batch_file", StateConflict,
                              f"file {file_id} is not a claim of node {self.node}",
                              id=file_id, batch_id=batch_id, entry=entry, node=self.node,
                              now=now)
                self.event("file.batched", file_id=file_id, batch_id=batch_id,
                           from_state=FileState.CLAIMED, to_state=FileState.BATCHED)

    def restore_batch(self, *, batch_id: str, folder: str, provider: str, state: BatchState,
                    remote_id: str | None, files: list[dict[str, Any]], why: str,
                    publish_key: str | None = None) -> None:
        """Record again a batch a lost store knew (``folderseal recover``): its files
        (keys as :meth:`add_claim`'s, plus ``entry``) and the state the provider's
        answer puts it in, in one transaction."""
        with self.transaction():
            self.add_claims([{k: v for k, v in f.items() if k != "entry"} for f in files])
            self.create_batch(batch_id=batch_id, folder=folder, provider=provider,
                            entries=[(f["id"], f["entry"]) for f in files])
            if state != BatchState.BATCHED:
                self._run("restore_batch", id=batch_id, state=state, remote_id=remote_id,
                          publish_key=publish_key, now=self._now())
            self.event("batch.state", batch_id=batch_id, from_state=BatchState.BATCHED,
                       to_state=state, detail=f"restored by folderseal recover: {why}")

    def batch(self, batch_id: str) -> BatchRecord | None:
        row = self._run("get_batch", id=batch_id).fetchone()
        return None if row is None else batch_record(row)

    def open_batch_owners(self) -> list[tuple[str, str, int]]:
        """(folder, provider, count) of the batches not finished yet."""
        return [(r[0], r[1], r[2]) for r in self._run("open_batch_owners")]

    def resume_batch(self, batch: BatchRecord, state: BatchState, why: str) -> None:
        """``folderseal recover`` (no daemon runs): move a batch on, due at once, unleased."""
        with self.transaction():
            self._guarded("resume_batch", StateConflict, f"batch {batch.id} is not {batch.state}",
                          id=batch.id, from_state=batch.state, state=state, now=self._now())
            self.event("batch.state", batch_id=batch.id, from_state=batch.state, to_state=state,
                       detail=f"folderseal recover: {why}")

    def batch_ids(self) -> set[str]:
        return {r[0] for r in self._run("all_batch_ids")}

    def acquire_batch(self, busy: frozenset[str] = frozenset()) -> BatchRecord | None:
        """Take the lease on the batch that is due first, skipping ``busy`` ones.

        Each acquisition writes a holder of its own (``node/token``): after a lease
        lapsed and another thread or node took the batch over, the old holder's guarded
        writes match nothing and it stops.
        """
        holder = f"{self.node}/{uuid.uuid4().hex[:8]}"
        asked_at = self._leases.clock()  # the local deadline counts from before the store was asked
        with self.transaction():
            row = self._run("acquire_batch", holder=holder, now=self._now(),
                            busy=json.dumps(sorted(busy)),
                            seconds=self._leases.seconds).fetchone()
        if row is None:
            return None
        self._leases.took(row["id"], holder, row["epoch"], asked_at)
        return batch_record(row)

    def next_due(self) -> float | None:
        row = self._run("next_due", now=self._now()).fetchone()
        return None if row[0] is None else float(row[0])

    def _holder(self, batch_id: str) -> str:
        lease = self._leases.get(batch_id)
        if lease is None:
            raise LeaseLost(f"this process holds no lease on batch {batch_id}")
        return lease.holder

    def renew_lease(self, batch_id: str, wait: bool = True) -> None:
        holder = self._holder(batch_id)
        asked_at = self._leases.clock()
        with self.transaction():
            if not wait and self._run("try_lock_batch", id=batch_id).fetchone() is None:
                return  # a step's write holds the row: its holder is at work
            row = self._run("renew_lease", id=batch_id, holder=holder, now=self._now(),
                            seconds=self._leases.seconds).fetchone()
            if row is None:
                self._leases.drop(batch_id, holder)
                raise LeaseLost(f"batch {batch_id} was taken over")
        self._leases.renewed(batch_id, holder, asked_at)

    def keep_lease(self, batch_id: str) -> None:
        """Make sure this holder keeps the batch's lease a while yet (LeaseLost if not).

        Only the holder extends its lease, and this process's own deadline (on boottime,
        from before each renewal was asked) never runs past the store's expiry: the store
        is asked only when half of it is gone (the lease keeper usually renewed it first).
        """
        lease = self._leases.get(batch_id)
        if lease is None or not self._leases.fresh(lease, share=0.5):
            self.renew_lease(batch_id)

    def _guarded_batch(self, name: str, batch_id: str, what: str, **params: Any) -> None:
        """A batch write guarded by its lease (renewed first if half of it is gone)."""
        self.keep_lease(batch_id)
        self._guarded(name, LeaseLost, what, id=batch_id, holder=self._holder(batch_id),
                      now=self._now(), **params)

    def transition(self, batch: BatchRecord, to_state: BatchState, detail: str | None = None,
                   remote_id: str | None = None) -> None:
        """Move a batch from the state it is in to the next, guarded by state and lease."""
        with self.transaction():
            self.keep_lease(batch.id)
            if self._run("transition_batch", id=batch.id, from_state=batch.state, to_state=to_state,
                         holder=self._holder(batch.id), remote_id=remote_id,
                         now=self._now()).rowcount != 1:
                current = self.batch(batch.id)
                if current is None or current.state != batch.state:
                    raise StateConflict(f"batch {batch.id} is no longer {batch.state}")
                raise LeaseLost(f"batch {batch.id} was taken over")
            if remote_id is not None:  # beside the detail, never instead of it
                detail = f"{detail}; remote {remote_id}" if detail else f"remote {remote_id}"
            self.event("batch.state", batch_id=batch.id, from_state=batch.state, to_state=to_state,
                       detail=detail)

    def set_package(self, batch: BatchRecord, sha256: str, size: int) -> None:
        with self.transaction():
            self._guarded_batch("set_package", batch.id, f"batch {batch.id} lease lost",
                              package_sha256=sha256, package_bytes=size)

    def fail_batch(self, batch: BatchRecord, code: str, message: str) -> None:
        """Mark a batch FAILED and each of its unfinished files REJECTED with the reason."""
        message = REDACTOR.text(message)
        with self.transaction():
            current = self.batch(batch.id)
            state = current.state if current else batch.state
            self._guarded_batch("fail_batch", batch.id, f"batch {batch.id} is not {state} any more",
                              from_state=state, error_code=code, error_message=message)
            self.event("batch.state", batch_id=batch.id, from_state=state,
                       to_state=BatchState.FAILED, detail=code)
            for record in self.files_of_batch(batch.id):
                if record.state in (FileState.BATCHED, FileState.READY):
                    result = DocumentResult(entry=record.entry or "", error_code=code,
                                            error_message=message)
                    self.set_file_result(record.id, record.state, result, batch_id=batch.id)

    def release(self, batch: BatchRecord, next_attempt_at: float | None) -> None:
        """Let go of the batch's lease; it is due again at ``next_attempt_at`` (None: never)."""
        lease = self._leases.get(batch.id)
        holder = "" if lease is None else lease.holder
        try:
            with self.transaction():
                self._run("release_batch", id=batch.id, holder=holder, now=self._now(),
                          next_attempt_at=next_attempt_at)
        finally:
            self._leases.drop(batch.id)

    def postpone(self, batch: BatchRecord, delay: Callable[[int], float], code: str,
                 message: str) -> tuple[int, float]:
        """Record a transient failure and release the batch; returns attempts and next time.

        The attempt count is kept across restarts, so backoff keeps growing.
        """
        message = REDACTOR.text(message)
        with self.transaction():
            current = self.batch(batch.id)
            attempts = (current.attempts if current else batch.attempts) + 1
            self.keep_lease(batch.id)
            row = self._run("postpone_batch", id=batch.id, holder=self._holder(batch.id),
                            now=self._now(), delay=delay(attempts), attempts=attempts,
                            error_code=code, error_message=message).fetchone()
            if row is None:
                raise LeaseLost(f"batch {batch.id} lease lost")
            self.event("batch.postponed", batch_id=batch.id, detail=f"{code}: {message}")
        self._leases.drop(batch.id)
        return attempts, float(row[0])  # the store's clock plus the delay

    def release_node_leases(self, every: bool = True) -> int:
        """At start: leases this node held before a crash are void; only the lapsed ones
        unless ``every`` (the earlier holder of the name is known to be gone)."""
        with self.transaction():
            return self._run("release_node_leases", node=self.node, every=every,
                             now=self._now()).rowcount

    # -- what a batch went through with its provider ------------------------------

    def note_upload(self, batch: BatchRecord, remote_id: str) -> None:
        """Record, durably, that an upload to ``remote_id`` is about to be sent."""
        with self.transaction():
            self._guarded_batch("note_upload", batch.id, f"batch {batch.id} is not CREATED or "
                              "its lease was lost", remote_id=remote_id)
            self.event("batch.upload_sent", batch_id=batch.id, detail=remote_id)

    def upload_sent_at(self, batch_id: str, remote_id: str) -> float | None:
        """When an upload to ``remote_id`` was first about to be sent, if ever."""
        row = self._run("upload_sent", batch_id=batch_id, remote_id=remote_id).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def abandon(self, batch: BatchRecord, remote_id: str, *, lost_answer: bool, why: str,
                keep_attempts: bool = False) -> None:
        """A remote batch abandoned before accept: back to CREATED with ``remote_id``,
        the abandon counted by its cause (an answer lost, or a mismatch); its attempts
        start again from 0 unless ``keep_attempts``."""
        with self.transaction():
            self._guarded_batch("abandon_batch", batch.id, f"batch {batch.id} is no longer "
                              f"{batch.state} or its lease was lost", from_state=batch.state,
                              remote_id=remote_id, lost=int(lost_answer),
                              mismatch=int(not lost_answer), keep_attempts=int(keep_attempts))
            self.event("batch.state", batch_id=batch.id, from_state=batch.state,
                       to_state=BatchState.CREATED,
                       detail=f"abandoned {batch.remote_id or '-'} "
                              f"({'answer lost' if lost_answer else 'mismatch'}): {why}; "
                              f"remote {remote_id}")

    def abandons(self, batch_id: str) -> tuple[int, int]:
        """The remote batches this batch abandoned before accept: (answers lost,
        mismatches)."""
        row = self._run("abandons", batch_id=batch_id).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def set_progress(self, batch: BatchRecord, progress: float) -> None:
        """How far the provider says the started batch is (0-100)."""
        with self.transaction():
            self.keep_lease(batch.id)
            self._run("set_progress", id=batch.id, holder=self._holder(batch.id),
                      now=self._now(), progress=progress)

    def set_publish_key(self, batch: BatchRecord, key: str | None) -> None:
        """The name or key the batch's file is published under (None: removed)."""
        with self.transaction():
            self._guarded_batch("set_publish_key", batch.id, f"batch {batch.id} lease lost",
                              publish_key=key)

    def publish_keys(self) -> set[str]:
        """Every publish key a batch still records: what must not be tidied away."""
        return {r[0] for r in self._run("publish_keys")}

    def set_remote_id(self, batch: BatchRecord, remote_id: str) -> None:
        """The remote batch an accept created (Steps.accept_creates), as it answered."""
        with self.transaction():
            self._guarded_batch("set_remote_id", batch.id, f"batch {batch.id} lease lost",
                              remote_id=remote_id)
            self.event("batch.remote_created", batch_id=batch.id, detail=remote_id)

    def progress(self, batch_id: str) -> float | None:
        row = self._run("progress", batch_id=batch_id).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def batch_transitions(self, batch_id: str) -> list[tuple[str, float]]:
        return [(r["to_state"], r["at"]) for r in self._run("batch_transitions", batch_id=batch_id)]

    def batch_history(self, batch_id: str) -> list[Event]:
        """The batch's transitions and its files', in order: what each file's timeline is
        drawn from."""
        return [Event(kind=r["kind"], file_id=r["file_id"], state=r["to_state"], at=r["at"])
                for r in self._run("batch_history", batch_id=batch_id)]

    # -- attempts at the files of a batch, and the daemons' heartbeats ---------------

    def begin_attempts(self, batch: BatchRecord, file_ids: list[str]) -> list[int]:
        """Count an attempt at each file before it is made, in one transaction. Its commit
        is not waited on to reach the disk (a sync per group of files in flight cost more
        than the signatures): the count guards against a file that crashes or hangs the
        signer or the daemon, and the database keeps it through such a crash; a power cut
        may take the last counts back, and those files are signed again, not alone."""
        counts = []
        # A renewal the lease needs is a commit of its own, waited on: only the counts
        # may be lost, never a lease this node then believes it holds. Inside, the lease
        # is only looked at: its time may have run out while the transaction waited.
        self.keep_lease(batch.id)
        with self.unsynced_transaction():
            lease = self._leases.get(batch.id)
            if lease is None or not self._leases.fresh(lease):
                raise LeaseLost(f"batch {batch.id}: its lease ran out before the attempts "
                                "at its files were counted")
            for file_id in file_ids:
                row = self._run("begin_attempt", id=file_id, batch_id=batch.id,
                                now=self._now()).fetchone()
                if row is None:
                    raise StateConflict(f"file {file_id} is not waiting in batch {batch.id}")
                self.event("file.attempt", file_id=file_id, batch_id=batch.id, detail=str(row[0]))
                counts.append(int(row[0]))
        return counts

    def forgive_attempts(self, batch: BatchRecord, file_ids: list[str]) -> None:
        """Take back one attempt of each file (it ended in a transient failure)."""
        with self.transaction():
            for file_id in file_ids:
                self._run("forgive_attempt", id=file_id, batch_id=batch.id, now=self._now())
                self.event("file.attempt_forgiven", file_id=file_id, batch_id=batch.id)

    def register_node(self, instance: str, pid: int, started_at: float,
                      alive_seconds: float) -> bool:
        """Take the node name for ``instance`` (its state folder's id), at start:
        NodeNameTaken (exit 78) while another instance of the name beat within
        ``alive_seconds``. This connection's heartbeats are for ``instance`` from now on.
        True if the name was this instance's before (or nobody's): a restart."""
        with self.transaction():
            row = self._run("node_instance", node=self.node).fetchone()
            restarted = row is None or row[0] in (instance, "")
            if self._run("register_node", node=self.node, pid=pid, started_at=started_at,
                         now=self._now(), instance=instance, version=__version__,
                         schema_version=self.schema_version,
                         alive_seconds=alive_seconds).rowcount != 1:
                raise NodeNameTaken(
                    f"another folderseal runs as node {self.node!r} on this store (it beat "
                    f"within the last {alive_seconds:g} s): give each node its own `node` "
                    "name, or stop the other one first")
        self.instance = instance
        return restarted

    def heartbeat(self, pid: int, started_at: float, notes: dict[str, Any]) -> None:
        """Record that this node's instance is alive, with its notes for status;
        NodeNameTaken if another instance took the name (this one was thought dead)."""
        with self.transaction():
            if self._run("heartbeat", node=self.node, instance=self.instance,
                         now=self._now(), notes=json.dumps(notes)).rowcount != 1:
                raise NodeNameTaken(
                    f"node {self.node!r} was taken by another folderseal after this one "
                    "stopped beating: this one stops; give each node its own `node` name")

    def nodes(self) -> list[dict[str, Any]]:
        return [{**dict(r), "notes": json.loads(r["notes"])} for r in self._run("nodes")]


def batch_record(row: Any) -> BatchRecord:
    """A batch's row (columns as in schema.sql) as a record."""
    return BatchRecord(
        id=row["id"], folder=row["folder"], provider=row["provider"],
        state=BatchState(row["state"]), claimed_by=row["claimed_by"],
        lease_until=row["lease_until"], next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"], remote_id=row["remote_id"],
        package_sha256=row["package_sha256"], package_bytes=row["package_bytes"],
        failed_step=row["failed_step"], error_code=row["error_code"],
        error_message=row["error_message"], created_at=row["created_at"],
        updated_at=row["updated_at"], publish_key=row["publish_key"], epoch=row["epoch"],
        takeovers=row["takeovers"],
    )
