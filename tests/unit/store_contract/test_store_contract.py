"""The store's contract, run on both backends (SqliteStore and MemoryStore): claims,
batches, transitions and their guards, leases and LeaseLost, postpone and attempts, and
the events each records. What only SQLite has (its file, schema, migrations, WAL) is
tested in test_store.py."""

from __future__ import annotations

import sqlite3

import pytest

from folderseal.core.errors import LeaseLost, StateConflict
from folderseal.core.model import DocumentResult, FileState, JobRecord, JobState
from folderseal.store import LEASE_SECONDS, Store
from tests.store_backends import (
    T0,
    Backend,
    Clock,
    acquired,
    batch_events,
    batched_job,
    claim,
)

# -- claims ----------------------------------------------------------------------------------

def test_add_claim_and_read_it_back(store: Store, clock: Clock) -> None:
    """A claim is stored with every field and the claim time from the clock."""
    store.add_claim(id="f1", folder="scans", source="2026/11/invoice.pdf", dev=11, ino=22,
                    size=333, mtime_ns=444, sha256="cd" * 32, seen_at=T0 - 10)
    record = store.file("f1")
    assert record is not None
    assert (record.id, record.folder, record.source) == ("f1", "scans", "2026/11/invoice.pdf")
    assert record.state == FileState.CLAIMED
    assert (record.dev, record.ino, record.size, record.mtime_ns) == (11, 22, 333, 444)
    assert record.sha256 == "cd" * 32
    assert (record.seen_at, record.claimed_at) == (T0 - 10, T0)
    assert record.batch_id is None and record.entry is None and record.attempts == 0
    assert store.file("missing") is None
    events = store.events(file_id="f1")
    assert [(e.kind, e.to_state) for e in events] == [("file.claimed", "CLAIMED")]


def test_non_utf8_names_round_trip(store: Store) -> None:
    """A name with invalid UTF-8 (surrogateescape) is stored as its raw bytes and read back
    (test_store.py: as a BLOB in SQLite)."""
    store.add_claim(id="f1", folder="scans", source="sub/caf\udce9.txt", dev=1, ino=2, size=3,
                    mtime_ns=4, sha256=None, seen_at=T0)
    record = store.file("f1")
    assert record is not None
    assert record.source == "sub/caf\udce9.txt"
    assert record.source_bytes == b"sub/caf\xe9.txt"


def test_duplicate_claim_id_is_refused(store: Store) -> None:
    """Two claims cannot share an id."""
    claim(store, "f1")
    with pytest.raises(sqlite3.IntegrityError):
        claim(store, "f1")


# -- jobs ------------------------------------------------------------------------------------

def test_create_job_records_job_entries_and_events(store: Store, clock: Clock) -> None:
    """create_job stores the job as BATCHED and each file's entry, with events for each."""
    job = batched_job(store, "job1", n=2)
    assert job.state == JobState.BATCHED
    assert (job.folder, job.provider) == ("scans", "local")
    assert job.claimed_by is None and job.attempts == 0
    assert job.next_attempt_at == T0 and job.created_at == T0
    members = store.files_of_job("job1")
    assert [(r.id, r.state, r.entry, r.batch_id) for r in members] == [
        ("job1-f0", FileState.BATCHED, "0000_job1-f0.pdf", "job1"),
        ("job1-f1", FileState.BATCHED, "0001_job1-f1.pdf", "job1"),
    ]
    events = store.events(job_id="job1")
    assert [(e.kind, e.file_id, e.to_state) for e in events] == [
        ("batch.created", None, "BATCHED"),
        ("file.batched", "job1-f0", "BATCHED"),
        ("file.batched", "job1-f1", "BATCHED"),
    ]
    assert store.job_ids() == {"job1"}


def test_create_job_is_all_or_nothing(store: Store) -> None:
    """A file that is not CLAIMED fails the whole batch: no job, no file moved."""
    batched_job(store, "job1", n=1)
    claim(store, "free")
    with pytest.raises(StateConflict):
        store.create_job(job_id="job2", folder="scans", provider="local",
                         entries=[("free", "0000_free.pdf"), ("job1-f0", "0001_taken.pdf")])
    assert store.job("job2") is None
    free = store.file("free")
    assert free is not None and free.state == FileState.CLAIMED and free.batch_id is None
    assert store.events(job_id="job2") == []


def test_acquire_job_takes_the_lease(store: Store, clock: Clock) -> None:
    """acquire_job sets claimed_by to this node (with a token of this acquisition) and
    lease_until to now + LEASE_SECONDS."""
    batched_job(store)
    job = acquired(store)
    assert job.id == "job1"
    assert job.claimed_by is not None and job.claimed_by.startswith("node-a/")
    assert job.lease_until == T0 + LEASE_SECONDS
    stored = store.job("job1")
    assert stored is not None and stored.claimed_by == job.claimed_by


def test_second_acquire_finds_nothing_while_the_lease_holds(
        store: Store, backend: Backend, clock: Clock) -> None:
    """Neither this node nor another can take a job whose lease has not expired."""
    batched_job(store)
    acquired(store)
    assert store.acquire_job() is None
    other = backend.open("node-b")
    try:
        clock.advance(LEASE_SECONDS - 1)
        assert other.acquire_job() is None
        clock.advance(1)
        taken = other.acquire_job()
        assert taken is not None and (taken.claimed_by or "").startswith("node-b/")
    finally:
        other.close()


def test_acquire_waits_for_next_attempt_at(store: Store, clock: Clock) -> None:
    """A job is not acquired before its next_attempt_at."""
    batched_job(store)
    job = acquired(store)
    store.release(job, next_attempt_at=T0 + 30)
    clock.advance(29)
    assert store.acquire_job() is None
    assert store.next_due() == T0 + 30
    clock.advance(1)
    assert store.acquire_job() is not None


def test_transition_moves_the_state_and_writes_an_event(store: Store) -> None:
    """Every transition changes the state and writes one batch.state event."""
    batched_job(store)
    job = acquired(store)
    store.transition(job, JobState.CREATED, remote_id="R-17")
    created = store.job(job.id)
    assert created is not None
    assert created.state == JobState.CREATED and created.remote_id == "R-17"
    store.transition(created, JobState.UPLOADED)
    uploaded = store.job(job.id)
    assert uploaded is not None
    assert uploaded.state == JobState.UPLOADED and uploaded.remote_id == "R-17"
    assert batch_events(store, job.id) == [("BATCHED", "CREATED"), ("CREATED", "UPLOADED")]
    assert [s for s, _ in store.job_transitions(job.id)] == ["CREATED", "UPLOADED"]


def test_job_history_holds_the_batch_and_its_files_in_order(store: Store) -> None:
    """job_history lists the batch's transitions and its own files' events (a retry's
    too), in the order they happened, and nothing of another batch."""
    batched_job(store)
    batched_job(store, "job2", n=1)
    job = acquired(store)
    store.transition(job, JobState.CREATED)
    store.set_file_result("job1-f0", FileState.BATCHED,
                          DocumentResult(entry="e", error_code="not_signed", error_message="no"),
                          job_id=job.id)
    store.set_file_state("job1-f0", FileState.REJECTED, FileState.FAILED)
    failed = store.file("job1-f0")
    assert failed is not None
    store.begin_retry([(failed, {"role": "retry", "to": "batch"})])
    store.reopen_file("job1-f0", job.id)
    history = [(e.kind, e.file_id, e.state) for e in store.job_history(job.id)]
    assert history == [
        ("file.batched", "job1-f0", "BATCHED"), ("file.batched", "job1-f1", "BATCHED"),
        ("batch.state", None, "CREATED"), ("file.state", "job1-f0", "REJECTED"),
        ("file.state", "job1-f0", "FAILED"), ("file.state", "job1-f0", "RETRYING"),
        ("file.state", "job1-f0", "BATCHED")]


def test_transition_from_the_wrong_state_is_refused(store: Store) -> None:
    """A transition that expects a state the job is no longer in raises and changes nothing."""
    batched_job(store)
    job = acquired(store)
    store.transition(job, JobState.CREATED)
    with pytest.raises((LeaseLost, StateConflict)):
        store.transition(job, JobState.CREATED)  # ``job`` still says BATCHED
    current = store.job(job.id)
    assert current is not None and current.state == JobState.CREATED
    assert batch_events(store, job.id) == [("BATCHED", "CREATED")]


def take_over(backend: Backend, clock: Clock, job: JobRecord) -> JobRecord:
    """Let the lease lapse and another node take the job."""
    clock.advance(LEASE_SECONDS)
    other = backend.open("node-b")
    try:
        taken = other.acquire_job()
    finally:
        other.close()
    assert taken is not None and taken.id == job.id
    return taken


def test_transition_after_the_lease_was_taken_over_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node whose lease expired and was taken over cannot move the job on."""
    batched_job(store)
    job = acquired(store)
    take_over(backend, clock, job)
    with pytest.raises(LeaseLost):
        store.transition(job, JobState.CREATED)
    current = store.job(job.id)
    assert current is not None and current.state == JobState.BATCHED
    assert batch_events(store, job.id) == []


def test_a_lapsed_lease_nobody_took_is_renewed_by_its_holder(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A long step that let the lease lapse goes on if nobody else took the job."""
    batched_job(store)
    job = acquired(store)
    clock.advance(LEASE_SECONDS + 5)
    store.transition(job, JobState.CREATED)
    current = store.job(job.id)
    assert current is not None and current.state == JobState.CREATED
    assert current.lease_until == T0 + LEASE_SECONDS + 5 + LEASE_SECONDS


def test_transition_by_another_node_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node that does not hold the lease cannot move the job."""
    batched_job(store)
    job = acquired(store)
    other = backend.open("node-b")
    try:
        with pytest.raises(LeaseLost):
            other.transition(job, JobState.CREATED)
    finally:
        other.close()
    assert batch_events(store, job.id) == []


def test_renew_lease_extends_it(store: Store, backend: Backend, clock: Clock) -> None:
    """renew_lease moves lease_until to now + LEASE_SECONDS while the lease holds."""
    batched_job(store)
    job = acquired(store)
    clock.advance(50)
    store.renew_lease(job.id)
    renewed = store.job(job.id)
    assert renewed is not None and renewed.lease_until == T0 + 50 + LEASE_SECONDS
    take_over(backend, clock, job)
    with pytest.raises(LeaseLost):
        store.renew_lease(job.id)


def test_postpone_counts_attempts_and_sets_next_attempt_at(store: Store, clock: Clock) -> None:
    """postpone adds one attempt, stores the reason, frees the lease and sets the next time."""
    batched_job(store)
    job = acquired(store)
    attempts, at = store.postpone(job, lambda n: 10.0 * n, "transient", "HTTP 503")
    assert (attempts, at) == (1, T0 + 10)
    stored = store.job(job.id)
    assert stored is not None
    assert stored.attempts == 1 and stored.next_attempt_at == T0 + 10
    assert stored.claimed_by is None and stored.lease_until is None
    assert (stored.error_code, stored.error_message) == ("transient", "HTTP 503")
    assert stored.state == JobState.BATCHED
    assert store.acquire_job() is None
    clock.advance(10)
    again = acquired(store)
    assert store.postpone(again, lambda n: 10.0 * n, "transient", "HTTP 503") == (2, T0 + 30)


def test_postpone_by_a_node_without_the_lease_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node that lost the job to another cannot postpone it."""
    batched_job(store)
    job = acquired(store)
    clock.advance(LEASE_SECONDS)
    other = backend.open("node-b")
    try:
        assert other.acquire_job() is not None
        with pytest.raises(LeaseLost):
            store.postpone(job, lambda n: 1.0, "transient", "x")
    finally:
        other.close()


def test_successful_transition_resets_attempts(store: Store, clock: Clock) -> None:
    """A step that succeeds starts the next step's backoff from zero."""
    batched_job(store)
    job = acquired(store)
    store.postpone(job, lambda n: 1.0, "transient", "x")
    clock.advance(1)
    job = acquired(store)
    store.transition(job, JobState.CREATED)
    stored = store.job(job.id)
    assert stored is not None and stored.attempts == 0 and stored.error_code is None


def test_release_node_leases(store: Store, backend: Backend, clock: Clock) -> None:
    """At start, this node's old leases are voided; other nodes' leases are kept."""
    batched_job(store, "job1", n=1)
    batched_job(store, "job2", n=1)
    mine = acquired(store)
    other = backend.open("node-b")
    try:
        theirs = acquired(other)
        assert store.release_node_leases() == 1
        freed = store.job(mine.id)
        kept = store.job(theirs.id)
        assert freed is not None and freed.claimed_by is None and freed.lease_until is None
        assert kept is not None and (kept.claimed_by or "").startswith("node-b/")
        again = other.acquire_job()  # free before its lease would have expired
        assert again is not None and again.id == mine.id
    finally:
        other.close()


def test_begin_attempt_counts_and_renews(store: Store, clock: Clock) -> None:
    """begin_attempts counts a file's attempts and renews the job's lease when half is gone."""
    job = acquired_after(store)
    file_id = store.files_of_job(job.id)[0].id
    assert store.begin_attempts(job, [file_id]) == [1]
    clock.advance(40)
    assert store.begin_attempts(job, [file_id]) == [2]
    renewed = store.job(job.id)
    assert renewed is not None and renewed.lease_until == T0 + 40 + LEASE_SECONDS
    record = store.file(file_id)
    assert record is not None and record.attempts == 2
    events = store.events(kind="file.attempt", file_id=file_id)
    assert [e.detail for e in events] == ["1", "2"]


def test_begin_attempt_without_the_lease_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """An attempt is not counted (or made) once the lease was taken over."""
    job = acquired_after(store)
    file_id = store.files_of_job(job.id)[0].id
    take_over(backend, clock, job)
    with pytest.raises(LeaseLost):
        store.begin_attempts(job, [file_id])
    record = store.file(file_id)
    assert record is not None and record.attempts == 0


def test_begin_attempt_on_a_file_of_another_batch_is_refused(store: Store) -> None:
    """A file not waiting in this batch is a StateConflict."""
    job = acquired_after(store)
    claim(store, "loose")
    with pytest.raises(StateConflict):
        store.begin_attempts(job, ["loose"])


def acquired_after(store: Store) -> JobRecord:
    batched_job(store)
    return acquired(store)


def test_fail_job_rejects_its_batched_files(store: Store) -> None:
    """fail_job marks the job FAILED at its step and every BATCHED file REJECTED with the reason."""
    job = acquired_after(store)
    store.fail_job(job, "provider_refused", "the provider refused the batch")
    failed = store.job(job.id)
    assert failed is not None
    assert failed.state == JobState.FAILED
    assert failed.failed_step == "BATCHED"
    assert (failed.error_code, failed.error_message) == (
        "provider_refused", "the provider refused the batch")
    members = store.files_of_job(job.id)
    assert len(members) == 2
    for record in members:
        assert record.state == FileState.REJECTED
        assert record.error_code == "provider_refused"
        assert record.result is not None and record.result.error_code == "provider_refused"
        assert record.result.entry == record.entry
    assert batch_events(store, job.id) == [("BATCHED", "FAILED")]


def test_fail_job_without_the_lease_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node whose lease was taken over cannot fail the job either."""
    job = acquired_after(store)
    take_over(backend, clock, job)
    with pytest.raises(LeaseLost):
        store.fail_job(job, "x", "y")
    stored = store.job(job.id)
    assert stored is not None and stored.state == JobState.BATCHED
    assert all(r.state == FileState.BATCHED for r in store.files_of_job(job.id))


def test_set_file_state_is_guarded(store: Store) -> None:
    """A file state change that expects the wrong state raises StateConflict."""
    claim(store, "f1")
    with pytest.raises(StateConflict):
        store.set_file_state("f1", FileState.BATCHED, FileState.READY)
    store.set_file_state("f1", FileState.CLAIMED, FileState.FAILED)
    record = store.file("f1")
    assert record is not None and record.state == FileState.FAILED


def test_acquire_skips_jobs_busy_in_this_process(store: Store, clock: Clock) -> None:
    """A job another thread of this process works on is never handed out again."""
    batched_job(store, "job1", n=1)
    batched_job(store, "job2", n=1)
    first = store.acquire_job()
    assert first is not None
    clock.advance(LEASE_SECONDS + 1)  # its lease lapsed during a long step
    second = store.acquire_job(frozenset({first.id}))
    assert second is not None and second.id != first.id
    assert store.acquire_job(frozenset({first.id, second.id})) is None


def test_output_names_are_reserved_until_the_file_is_done(store: Store) -> None:
    """Names planned for one unfinished file are not free for another; done releases them."""
    claim(store, "f1", "scan.pdf")
    claim(store, "f2", "scan.pdf")
    first = store.file("f1")
    assert first is not None and store.names_free("scans", "outbox", "f2", ["scan.pdf"])
    store.set_file_outputs(first, [{"role": "signed", "path": "scan.pdf"}], "outbox")
    assert not store.names_free("scans", "outbox", "f2", ["scan.pdf"])
    assert store.names_free("scans", "errors", "f2", ["scan.pdf"])
    assert store.names_free("scans", "outbox", "f1", ["scan.pdf"])  # its own names
    store.set_file_state("f1", FileState.CLAIMED, FileState.FAILED)
    assert store.names_free("scans", "outbox", "f2", ["scan.pdf"])


def test_abandons_are_counted_by_cause_and_the_detail_is_kept(store: Store) -> None:
    """An abandon moves the job to CREATED with the new remote id, counts its cause in a
    column, and its event keeps the reason (a remote id beside it, not instead of it)."""
    batched_job(store)
    job = acquired(store)
    store.transition(job, JobState.CREATED, detail="created", remote_id="r1")
    job = store.job(job.id)
    assert job is not None
    store.abandon(job, "r2", lost_answer=True, why="answer lost")
    job = store.job(job.id)
    assert job is not None and job.state == JobState.CREATED and job.remote_id == "r2"
    store.abandon(job, "r3", lost_answer=False, why="wrong list")
    assert store.abandons(job.id) == (1, 1)
    details = [e.detail for e in store.events(kind="batch.state", job_id=job.id)]
    assert details[-3:] == ["created; remote r1", "abandoned r1 (answer lost): answer lost; "
                            "remote r2", "abandoned r2 (mismatch): wrong list; remote r3"]
