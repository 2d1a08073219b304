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

from folderseal.core.errors import LeaseLost, StateConflict
from folderseal.core.model import DocumentResult, Event, FileState, JobRecord, JobState
from folderseal.core.redact import REDACTOR
from folderseal.store import LEASE_SECONDS
from folderseal.store.files import FileRecords


class JobRecords(FileRecords):
    """What the store knows of each batch, and the leases this connection holds.

    One method per store operation on batches: the store's contract is this wide, and each
    method is one named query."""

    def create_job(self, *, job_id: str, folder: str, provider: str,
                   entries: list[tuple[str, str]]) -> None:
        """Record a batch and the entry name of each of its files, in one transaction."""
        now = self.clock()
        with self.transaction():
            self._run("insert_job", id=job_id, folder=folder, provider=provider, now=now)
            self.event("batch.created", job_id=job_id, to_state=JobState.BATCHED,
                       detail=str(len(entries)))
            for file_id, entry in entries:
                self._guarded("batch_file", StateConflict, f"file {file_id} is not claimed",
                              id=file_id, batch_id=job_id, entry=entry, now=now)
                self.event("file.batched", file_id=file_id, job_id=job_id,
                           from_state=FileState.CLAIMED, to_state=FileState.BATCHED)

    def restore_job(self, *, job_id: str, folder: str, provider: str, state: JobState,
                    remote_id: str | None, files: list[dict[str, Any]], why: str,
                    publish_key: str | None = None) -> None:
        """Record again a batch a lost store knew (``folderseal recover``): its files
        (keys as :meth:`add_claim`'s, plus ``entry``) and the state the provider's
        answer puts it in, in one transaction."""
        with self.transaction():
            self.add_claims([{k: v for k, v in f.items() if k != "entry"} for f in files])
            self.create_job(job_id=job_id, folder=folder, provider=provider,
                            entries=[(f["id"], f["entry"]) for f in files])
            if state != JobState.BATCHED:
                self._run("restore_job", id=job_id, state=state, remote_id=remote_id,
                          publish_key=publish_key, now=self.clock())
            self.event("batch.state", job_id=job_id, from_state=JobState.BATCHED,
                       to_state=state, detail=f"restored by folderseal recover: {why}")

    def job(self, job_id: str) -> JobRecord | None:
        row = self._run("get_job", id=job_id).fetchone()
        return None if row is None else job_record(row)

    def open_job_owners(self) -> list[tuple[str, str, int]]:
        """(folder, provider, count) of the batches not finished yet."""
        return [(r[0], r[1], r[2]) for r in self._run("open_job_owners")]

    def resume_job(self, job: JobRecord, state: JobState, why: str) -> None:
        """``folderseal recover`` (no daemon runs): move a job on, due at once, unleased."""
        with self.transaction():
            self._guarded("resume_job", StateConflict, f"batch {job.id} is not {job.state}",
                          id=job.id, from_state=job.state, state=state, now=self.clock())
            self.event("batch.state", job_id=job.id, from_state=job.state, to_state=state,
                       detail=f"folderseal recover: {why}")

    def job_ids(self) -> set[str]:
        return {r[0] for r in self._run("all_job_ids")}

    def acquire_job(self, busy: frozenset[str] = frozenset()) -> JobRecord | None:
        """Take the lease on the job that is due first, skipping ``busy`` ones.

        Each acquisition writes a holder of its own (``node/token``): after a lease
        lapsed and another thread or node took the job over, the old holder's guarded
        writes match nothing and it stops.
        """
        now = self.clock()
        holder = f"{self.node}/{uuid.uuid4().hex[:8]}"
        with self.transaction():
            row = self._run("acquire_job", holder=holder, now=now, busy=json.dumps(sorted(busy)),
                            lease_until=now + LEASE_SECONDS).fetchone()
        if row is None:
            return None
        self._leases[row["id"]] = (holder, now + LEASE_SECONDS)
        return job_record(row)

    def next_due(self) -> float | None:
        row = self._run("next_due", now=self.clock()).fetchone()
        return None if row[0] is None else float(row[0])

    def _holder(self, job_id: str) -> str:
        if job_id not in self._leases:
            raise LeaseLost(f"this process holds no lease on batch {job_id}")
        return self._leases[job_id][0]

    def renew_lease(self, job_id: str) -> None:
        now = self.clock()
        holder = self._holder(job_id)
        with self.transaction():
            self._guarded("renew_lease", LeaseLost, f"batch {job_id} was taken over",
                          id=job_id, holder=holder, lease_until=now + LEASE_SECONDS)
        self._leases[job_id] = (holder, now + LEASE_SECONDS)

    def keep_lease(self, job_id: str) -> None:
        """Make sure this holder keeps the job's lease a while yet (LeaseLost if not).

        Only the holder extends its lease, so the expiry it last wrote is the truth; the
        store is written only when half of it is gone.
        """
        if self._leases.get(job_id, ("", 0.0))[1] - self.clock() < LEASE_SECONDS / 2:
            self.renew_lease(job_id)

    def _guarded_job(self, name: str, job_id: str, what: str, **params: Any) -> None:
        """A job write guarded by its lease (renewed first if half of it is gone)."""
        self.keep_lease(job_id)
        self._guarded(name, LeaseLost, what, id=job_id, holder=self._holder(job_id),
                      now=self.clock(), **params)

    def transition(self, job: JobRecord, to_state: JobState, detail: str | None = None,
                   remote_id: str | None = None) -> None:
        """Move a job from the state it is in to the next, guarded by state and lease."""
        with self.transaction():
            self.keep_lease(job.id)
            if self._run("transition_job", id=job.id, from_state=job.state, to_state=to_state,
                         holder=self._holder(job.id), remote_id=remote_id,
                         now=self.clock()).rowcount != 1:
                current = self.job(job.id)
                if current is None or current.state != job.state:
                    raise StateConflict(f"batch {job.id} is no longer {job.state}")
                raise LeaseLost(f"batch {job.id} was taken over")
            if remote_id is not None:  # beside the detail, never instead of it
                detail = f"{detail}; remote {remote_id}" if detail else f"remote {remote_id}"
            self.event("batch.state", job_id=job.id, from_state=job.state, to_state=to_state,
                       detail=detail)

    def set_package(self, job: JobRecord, sha256: str, size: int) -> None:
        with self.transaction():
            self._guarded_job("set_package", job.id, f"batch {job.id} lease lost",
                              package_sha256=sha256, package_bytes=size)

    def fail_job(self, job: JobRecord, code: str, message: str) -> None:
        """Mark a job FAILED and each of its unfinished files REJECTED with the reason."""
        message = REDACTOR.text(message)
        with self.transaction():
            current = self.job(job.id)
            state = current.state if current else job.state
            self._guarded_job("fail_job", job.id, f"batch {job.id} is not {state} any more",
                              from_state=state, error_code=code, error_message=message)
            self.event("batch.state", job_id=job.id, from_state=state,
                       to_state=JobState.FAILED, detail=code)
            for record in self.files_of_job(job.id):
                if record.state in (FileState.BATCHED, FileState.READY):
                    result = DocumentResult(entry=record.entry or "", error_code=code,
                                            error_message=message)
                    self.set_file_result(record.id, record.state, result, job_id=job.id)

    def release(self, job: JobRecord, next_attempt_at: float | None) -> None:
        """Let go of the job's lease; it is due again at ``next_attempt_at`` (None: never)."""
        holder = self._leases.pop(job.id, ("", 0.0))[0]
        with self.transaction():
            self._run("release_job", id=job.id, holder=holder, now=self.clock(),
                      next_attempt_at=next_attempt_at)

    def postpone(self, job: JobRecord, delay: Callable[[int], float], code: str,
                 message: str) -> tuple[int, float]:
        """Record a transient failure and release the job; returns attempts and next time.

        The attempt count is kept across restarts, so backoff keeps growing.
        """
        message = REDACTOR.text(message)
        now = self.clock()
        with self.transaction():
            current = self.job(job.id)
            attempts = (current.attempts if current else job.attempts) + 1
            at = now + delay(attempts)
            self._guarded_job("postpone_job", job.id, f"batch {job.id} lease lost",
                              next_attempt_at=at, attempts=attempts, error_code=code,
                              error_message=message)
            self.event("batch.postponed", job_id=job.id, detail=f"{code}: {message}")
        self._leases.pop(job.id, None)
        return attempts, at

    def release_node_leases(self) -> int:
        """At start: leases this node held before a crash are void."""
        with self.transaction():
            return self._run("release_node_leases", node=self.node).rowcount

    # -- what a batch went through with its provider ------------------------------

    def note_upload(self, job: JobRecord, remote_id: str) -> None:
        """Record, durably, that an upload to ``remote_id`` is about to be sent."""
        with self.transaction():
            self._guarded_job("note_upload", job.id, f"batch {job.id} is not CREATED or "
                              "its lease was lost", remote_id=remote_id)
            self.event("batch.upload_sent", job_id=job.id, detail=remote_id)

    def upload_sent_at(self, job_id: str, remote_id: str) -> float | None:
        """When an upload to ``remote_id`` was first about to be sent, if ever."""
        row = self._run("upload_sent", job_id=job_id, remote_id=remote_id).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def abandon(self, job: JobRecord, remote_id: str, *, lost_answer: bool, why: str) -> None:
        """A remote batch abandoned before accept: back to CREATED with ``remote_id``,
        the abandon counted by its cause (an answer lost, or a mismatch)."""
        with self.transaction():
            self._guarded_job("abandon_job", job.id, f"batch {job.id} is no longer "
                              f"{job.state} or its lease was lost", from_state=job.state,
                              remote_id=remote_id, lost=int(lost_answer),
                              mismatch=int(not lost_answer))
            self.event("batch.state", job_id=job.id, from_state=job.state,
                       to_state=JobState.CREATED,
                       detail=f"abandoned {job.remote_id or '-'} "
                              f"({'answer lost' if lost_answer else 'mismatch'}): {why}; "
                              f"remote {remote_id}")

    def abandons(self, job_id: str) -> tuple[int, int]:
        """The remote batches this batch abandoned before accept: (answers lost,
        mismatches)."""
        row = self._run("abandons", job_id=job_id).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def set_progress(self, job: JobRecord, progress: float) -> None:
        """How far the provider says the started batch is (0-100)."""
        with self.transaction():
            self.keep_lease(job.id)
            self._run("set_progress", id=job.id, holder=self._holder(job.id),
                      now=self.clock(), progress=progress)

    def set_publish_key(self, job: JobRecord, key: str | None) -> None:
        """The name or key the batch's file is published under (None: removed)."""
        with self.transaction():
            self._guarded_job("set_publish_key", job.id, f"batch {job.id} lease lost",
                              publish_key=key)

    def publish_keys(self) -> set[str]:
        """Every publish key a batch still records: what must not be tidied away."""
        return {r[0] for r in self._run("publish_keys")}

    def set_remote_id(self, job: JobRecord, remote_id: str) -> None:
        """The remote batch an accept created (Steps.accept_creates), as it answered."""
        with self.transaction():
            self._guarded_job("set_remote_id", job.id, f"batch {job.id} lease lost",
                              remote_id=remote_id)
            self.event("batch.remote_created", job_id=job.id, detail=remote_id)

    def progress(self, job_id: str) -> float | None:
        row = self._run("progress", job_id=job_id).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def job_transitions(self, job_id: str) -> list[tuple[str, float]]:
        return [(r["to_state"], r["at"]) for r in self._run("job_transitions", job_id=job_id)]

    def job_history(self, job_id: str) -> list[Event]:
        """The batch's transitions and its files', in order: what each file's timeline is
        drawn from."""
        return [Event(kind=r["kind"], file_id=r["file_id"], state=r["to_state"], at=r["at"])
                for r in self._run("job_history", job_id=job_id)]

    # -- attempts at the files of a batch, and the daemons' heartbeats ---------------

    def begin_attempts(self, job: JobRecord, file_ids: list[str]) -> list[int]:
        """Count an attempt at each file before it is made, in one transaction."""
        counts = []
        with self.transaction():
            self.keep_lease(job.id)
            for file_id in file_ids:
                row = self._run("begin_attempt", id=file_id, batch_id=job.id,
                                now=self.clock()).fetchone()
                if row is None:
                    raise StateConflict(f"file {file_id} is not waiting in batch {job.id}")
                self.event("file.attempt", file_id=file_id, job_id=job.id, detail=str(row[0]))
                counts.append(int(row[0]))
        return counts

    def forgive_attempts(self, job: JobRecord, file_ids: list[str]) -> None:
        """Take back one attempt of each file (it ended in a transient failure)."""
        with self.transaction():
            for file_id in file_ids:
                self._run("forgive_attempt", id=file_id, batch_id=job.id, now=self.clock())
                self.event("file.attempt_forgiven", file_id=file_id, job_id=job.id)

    def heartbeat(self, pid: int, started_at: float, notes: dict[str, Any]) -> None:
        with self.transaction():
            self._run("heartbeat", node=self.node, pid=pid, started_at=started_at,
                      now=self.clock(), notes=json.dumps(notes))

    def nodes(self) -> list[dict[str, Any]]:
        return [{**dict(r), "notes": json.loads(r["notes"])} for r in self._run("nodes")]


def job_record(row: Any) -> JobRecord:
    """A batch's row (columns as in schema.sql) as a record."""
    return JobRecord(
        id=row["id"], folder=row["folder"], provider=row["provider"],
        state=JobState(row["state"]), claimed_by=row["claimed_by"],
        lease_until=row["lease_until"], next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"], remote_id=row["remote_id"],
        package_sha256=row["package_sha256"], package_bytes=row["package_bytes"],
        failed_step=row["failed_step"], error_code=row["error_code"],
        error_message=row["error_message"], created_at=row["created_at"],
        updated_at=row["updated_at"], publish_key=row["publish_key"],
    )
