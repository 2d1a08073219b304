"""The store's contract, run on every backend (SqliteStore, PostgresStore and
MemoryStore): claims, batches, transitions and their guards, leases and LeaseLost,
postpone and attempts, and the events each records. What only SQLite has (its file,
schema, migrations, WAL) is tested in test_store.py; PostgreSQL's, in
test_store_postgres.py."""

from __future__ import annotations

import pytest

from folderseal.core.errors import LeaseLost, StateConflict
from folderseal.core.model import BatchRecord, BatchState, DocumentResult, FileState
from folderseal.store import LEASE_SECONDS, Store
from tests.store_backends import (
    T0,
    Backend,
    Clock,
    acquired,
    batch_events,
    claim,
    formed_batch,
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



# -- batches ------------------------------------------------------------------------------------

def test_create_batch_records_batch_entries_and_events(store: Store, clock: Clock) -> None:
    """create_batch stores the batch as BATCHED and each file's entry, with events for each."""
    batch = formed_batch(store, "job1", n=2)
    assert batch.state == BatchState.BATCHED
    assert (batch.folder, batch.provider) == ("scans", "local")
    assert batch.claimed_by is None and batch.attempts == 0
    assert batch.next_attempt_at == T0 and batch.created_at == T0
    members = store.files_of_batch("job1")
    assert [(r.id, r.state, r.entry, r.batch_id) for r in members] == [
        ("job1-f0", FileState.BATCHED, "0000_job1-f0.pdf", "job1"),
        ("job1-f1", FileState.BATCHED, "0001_job1-f1.pdf", "job1"),
    ]
    events = store.events(batch_id="job1")
    assert [(e.kind, e.file_id, e.to_state) for e in events] == [
        ("batch.created", None, "BATCHED"),
        ("file.batched", "job1-f0", "BATCHED"),
        ("file.batched", "job1-f1", "BATCHED"),
    ]
    assert store.batch_ids() == {"job1"}


def test_create_batch_is_all_or_nothing(store: Store) -> None:
    """A file that is not CLAIMED fails the whole batch: no batch, no file moved."""
    formed_batch(store, "job1", n=1)
    claim(store, "free")
    with pytest.raises(StateConflict):
        store.create_batch(batch_id="job2", folder="scans", provider="local",
                         entries=[("free", "0000_free.pdf"), ("job1-f0", "0001_taken.pdf")])
    assert store.batch("job2") is None
    free = store.file("free")
    assert free is not None and free.state == FileState.CLAIMED and free.batch_id is None
    assert store.events(batch_id="job2") == []


def test_acquire_batch_takes_the_lease(store: Store, clock: Clock) -> None:
    """acquire_batch sets claimed_by to this node (with a token of this acquisition) and
    lease_until to now + LEASE_SECONDS."""
    formed_batch(store)
    batch = acquired(store)
    assert batch.id == "job1"
    assert batch.claimed_by is not None and batch.claimed_by.startswith("node-a/")
    assert batch.lease_until == T0 + LEASE_SECONDS
    stored = store.batch("job1")
    assert stored is not None and stored.claimed_by == batch.claimed_by


def test_second_acquire_finds_nothing_while_the_lease_holds(
        store: Store, backend: Backend, clock: Clock) -> None:
    """Neither this node nor another can take a batch whose lease has not expired."""
    formed_batch(store)
    acquired(store)
    assert store.acquire_batch() is None
    other = backend.open("node-b")
    try:
        clock.advance(LEASE_SECONDS - 1)
        assert other.acquire_batch() is None
        clock.advance(1)
        taken = other.acquire_batch()
        assert taken is not None and (taken.claimed_by or "").startswith("node-b/")
    finally:
        other.close()


def test_acquire_waits_for_next_attempt_at(store: Store, clock: Clock) -> None:
    """A batch is not acquired before its next_attempt_at."""
    formed_batch(store)
    batch = acquired(store)
    store.release(batch, next_attempt_at=T0 + 30)
    clock.advance(29)
    assert store.acquire_batch() is None
    assert store.next_due() == T0 + 30
    clock.advance(1)
    assert store.acquire_batch() is not None


def test_transition_moves_the_state_and_writes_an_event(store: Store) -> None:
    """Every transition changes the state and writes one batch.state event."""
    formed_batch(store)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED, remote_id="R-17")
    created = store.batch(batch.id)
    assert created is not None
    assert created.state == BatchState.CREATED and created.remote_id == "R-17"
    store.transition(created, BatchState.UPLOADED)
    uploaded = store.batch(batch.id)
    assert uploaded is not None
    assert uploaded.state == BatchState.UPLOADED and uploaded.remote_id == "R-17"
    assert batch_events(store, batch.id) == [("BATCHED", "CREATED"), ("CREATED", "UPLOADED")]
    assert [s for s, _ in store.batch_transitions(batch.id)] == ["CREATED", "UPLOADED"]


def test_batch_history_holds_the_batch_and_its_files_in_order(store: Store) -> None:
    """batch_history lists the batch's transitions and its own files' events (a retry's
    too), in the order they happened, and nothing of another batch."""
    formed_batch(store)
    formed_batch(store, "job2", n=1)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED)
    store.set_file_result("job1-f0", FileState.BATCHED,
                          DocumentResult(entry="e", error_code="not_signed", error_message="no"),
                          batch_id=batch.id)
    store.set_file_state("job1-f0", FileState.REJECTED, FileState.FAILED)
    failed = store.file("job1-f0")
    assert failed is not None
    store.begin_retry([(failed, {"role": "retry", "to": "batch"})])
    store.reopen_file("job1-f0", batch.id)
    history = [(e.kind, e.file_id, e.state) for e in store.batch_history(batch.id)]
    assert history == [
        ("file.batched", "job1-f0", "BATCHED"), ("file.batched", "job1-f1", "BATCHED"),
        ("batch.state", None, "CREATED"), ("file.state", "job1-f0", "REJECTED"),
        ("file.state", "job1-f0", "FAILED"), ("file.state", "job1-f0", "RETRYING"),
        ("file.state", "job1-f0", "BATCHED")]


def test_transition_from_the_wrong_state_is_refused(store: Store) -> None:
    """A transition that expects a state the batch is no longer in raises and changes nothing."""
    formed_batch(store)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED)
    with pytest.raises((LeaseLost, StateConflict)):
        store.transition(batch, BatchState.CREATED)  # ``batch`` still says BATCHED
    current = store.batch(batch.id)
    assert current is not None and current.state == BatchState.CREATED
    assert batch_events(store, batch.id) == [("BATCHED", "CREATED")]


def take_over(backend: Backend, clock: Clock, batch: BatchRecord) -> BatchRecord:
    """Let the lease lapse and another node take the batch."""
    clock.advance(LEASE_SECONDS)
    other = backend.open("node-b")
    try:
        taken = other.acquire_batch()
    finally:
        other.close()
    assert taken is not None and taken.id == batch.id
    return taken


def test_transition_after_the_lease_was_taken_over_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node whose lease expired and was taken over cannot move the batch on."""
    formed_batch(store)
    batch = acquired(store)
    take_over(backend, clock, batch)
    with pytest.raises(LeaseLost):
        store.transition(batch, BatchState.CREATED)
    current = store.batch(batch.id)
    assert current is not None and current.state == BatchState.BATCHED
    assert batch_events(store, batch.id) == []


def test_a_steps_writes_about_the_batchs_files_are_fenced_by_its_lease(
        store: Store, backend: Backend, clock: Clock) -> None:
    """Inside ``holding`` (a step of the batch), every write checks the lease first: after
    another node took the batch over, a late holder cannot record a provider's answer, a
    result, output names, a file state or an attempt, and nothing changes. Outside it
    (``recover``, ``retry``, the intake) the same writes are not about a held batch."""
    formed_batch(store)
    batch = acquired(store)
    [first, second] = store.files_of_batch(batch.id)
    with store.holding(batch.id):
        store.note_remote_document(batch.id, first.id, {"batch": "r1", "id": None})
        assert store.begin_attempts(batch, [first.id]) == [1]
    take_over(backend, clock, batch)
    result = DocumentResult(entry=first.entry or "", error_code="late", error_message="late")
    late_writes = [
        lambda: store.note_remote_document(batch.id, first.id, {"batch": "r1", "id": "d1"}),
        lambda: store.set_file_result(first.id, FileState.BATCHED, result, batch_id=batch.id),
        lambda: store.set_file_outputs(first, [{"path": "late.pdf"}], "outbox"),
        lambda: store.set_file_state(second.id, FileState.BATCHED, FileState.FAILED,
                                     batch_id=batch.id),
        lambda: store.begin_attempts(batch, [first.id]),
        lambda: store.forgive_attempts(batch, [first.id]),
    ]
    with store.holding(batch.id):
        for write in late_writes:
            with pytest.raises(LeaseLost, match="taken over"):
                write()
    assert store.remote_documents(batch.id) == {first.id: {"batch": "r1", "id": None}}
    after = {r.id: r for r in store.files_of_batch(batch.id)}
    assert after[first.id].state == after[second.id].state == FileState.BATCHED
    assert after[first.id].attempts == 1 and after[first.id].outputs == ()
    assert store.names_free("scans", "outbox", second.id, ["late.pdf"])
    # Not inside a step (recover restoring what a manifest knew): not fenced.
    store.note_remote_document(batch.id, first.id, {"batch": "r1", "id": "d1"})
    assert store.remote_documents(batch.id)[first.id]["id"] == "d1"


@pytest.mark.parametrize("in_a_step", [False, True])
def test_a_lapsed_lease_nobody_took_is_renewed_by_its_holder(
        store: Store, backend: Backend, clock: Clock, in_a_step: bool) -> None:
    """A long step that let the lease lapse goes on if nobody else took the batch, also
    inside ``holding`` (every write of a step is fenced: the fence asks who holds it)."""
    formed_batch(store)
    batch = acquired(store)
    clock.advance(LEASE_SECONDS + 5)
    if in_a_step:
        with store.holding(batch.id):
            store.transition(batch, BatchState.CREATED)
    else:
        store.transition(batch, BatchState.CREATED)
    current = store.batch(batch.id)
    assert current is not None and current.state == BatchState.CREATED
    assert current.lease_until == T0 + LEASE_SECONDS + 5 + LEASE_SECONDS


def test_transition_by_another_node_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node that does not hold the lease cannot move the batch."""
    formed_batch(store)
    batch = acquired(store)
    other = backend.open("node-b")
    try:
        with pytest.raises(LeaseLost):
            other.transition(batch, BatchState.CREATED)
    finally:
        other.close()
    assert batch_events(store, batch.id) == []


def test_renew_lease_extends_it(store: Store, backend: Backend, clock: Clock) -> None:
    """renew_lease moves lease_until to now + LEASE_SECONDS while the lease holds."""
    formed_batch(store)
    batch = acquired(store)
    clock.advance(50)
    store.renew_lease(batch.id)
    renewed = store.batch(batch.id)
    assert renewed is not None and renewed.lease_until == T0 + 50 + LEASE_SECONDS
    take_over(backend, clock, batch)
    with pytest.raises(LeaseLost):
        store.renew_lease(batch.id)


def test_postpone_counts_attempts_and_sets_next_attempt_at(store: Store, clock: Clock) -> None:
    """postpone adds one attempt, stores the reason, frees the lease and sets the next time."""
    formed_batch(store)
    batch = acquired(store)
    attempts, at = store.postpone(batch, lambda n: 10.0 * n, "transient", "HTTP 503")
    assert (attempts, at) == (1, T0 + 10)
    stored = store.batch(batch.id)
    assert stored is not None
    assert stored.attempts == 1 and stored.next_attempt_at == T0 + 10
    assert stored.claimed_by is None and stored.lease_until is None
    assert (stored.error_code, stored.error_message) == ("transient", "HTTP 503")
    assert stored.state == BatchState.BATCHED
    assert store.acquire_batch() is None
    clock.advance(10)
    again = acquired(store)
    assert store.postpone(again, lambda n: 10.0 * n, "transient", "HTTP 503") == (2, T0 + 30)


def test_postpone_by_a_node_without_the_lease_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node that lost the batch to another cannot postpone it."""
    formed_batch(store)
    batch = acquired(store)
    clock.advance(LEASE_SECONDS)
    other = backend.open("node-b")
    try:
        assert other.acquire_batch() is not None
        with pytest.raises(LeaseLost):
            store.postpone(batch, lambda n: 1.0, "transient", "x")
    finally:
        other.close()


def test_successful_transition_resets_attempts(store: Store, clock: Clock) -> None:
    """A step that succeeds starts the next step's backoff from zero."""
    formed_batch(store)
    batch = acquired(store)
    store.postpone(batch, lambda n: 1.0, "transient", "x")
    clock.advance(1)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED)
    stored = store.batch(batch.id)
    assert stored is not None and stored.attempts == 0 and stored.error_code is None


def test_release_node_leases(store: Store, backend: Backend, clock: Clock) -> None:
    """At start, this node's old leases are voided; other nodes' leases are kept."""
    formed_batch(store, "job1", n=1)
    formed_batch(store, "job2", n=1)
    mine = acquired(store)
    other = backend.open("node-b")
    try:
        theirs = acquired(other)
        assert store.release_node_leases() == 1
        freed = store.batch(mine.id)
        kept = store.batch(theirs.id)
        assert freed is not None and freed.claimed_by is None and freed.lease_until is None
        assert kept is not None and (kept.claimed_by or "").startswith("node-b/")
        again = other.acquire_batch()  # free before its lease would have expired
        assert again is not None and again.id == mine.id
    finally:
        other.close()


def test_release_node_leases_matches_the_name_exactly(backend: Backend) -> None:
    """A node name holding "_" or "%" releases its own leases only, not those of a node
    whose name the same pattern would match."""
    for name, other_name in (("scan_1", "scanX1"), ("100%", "100%-b")):
        mine, other = backend.open(name), backend.open(other_name)
        formed_batch(other, f"job-{other_name}", n=1)
        theirs = acquired(other)
        assert mine.release_node_leases() == 0
        kept = other.batch(theirs.id)
        assert kept is not None and (kept.claimed_by or "").startswith(f"{other_name}/")


def test_each_acquisition_bumps_the_epoch_and_events_carry_it(backend: Backend,
                                                             clock: Clock) -> None:
    """The epoch grows with each acquisition of a batch's lease, by any node, and the
    events a holder records name the epoch it held (events of no lease name none)."""
    first, second = backend.open("node-a"), backend.open("node-b")
    batch = formed_batch(first, "job1", n=1)
    assert batch.epoch == 0
    taken = acquired(first)
    assert taken.epoch == 1
    first.transition(taken, BatchState.CREATED)
    clock.advance(LEASE_SECONDS + 1)  # node-a's lease lapses; node-b takes the batch
    again = second.acquire_batch()
    assert again is not None and again.epoch == 2
    second.transition(again, BatchState.UPLOADED)
    states = [(e.node, e.to_state, e.epoch) for e in second.events(batch_id="job1")
              if e.kind == "batch.state"]
    assert states == [("node-a", "CREATED", 1), ("node-b", "UPLOADED", 2)]
    created = [e.epoch for e in second.events(batch_id="job1") if e.kind == "batch.created"]
    assert created == [None]


def test_a_lapsed_lease_taken_by_another_holder_counts_a_takeover(backend: Backend,
                                                                  clock: Clock) -> None:
    """Taking a batch whose holder's lease lapsed counts a takeover; taking one its
    holder released (or a node's restart voided) does not, nor does the first taking."""
    first, second = backend.open("node-a"), backend.open("node-b")
    formed_batch(first, "job1", n=1)
    taken = acquired(first)
    assert taken.takeovers == 0
    first.release(taken, next_attempt_at=clock())  # released: not a takeover
    again = acquired(second)
    assert again.takeovers == 0
    clock.advance(LEASE_SECONDS + 1)  # node-b's lease lapses, still claimed
    over = acquired(first)
    assert over.takeovers == 1
    clock.advance(LEASE_SECONDS + 1)
    assert acquired(second).takeovers == 2
    assert second.release_node_leases() == 1  # a restart voids its own leases first
    stored = acquired(first)
    assert stored.takeovers == 2
    read = first.batch("job1")
    assert read is not None and read.takeovers == 2


def test_a_lease_past_its_local_deadline_is_confirmed_with_the_store(
        backend: Backend, clock: Clock) -> None:
    """keep_lease asks the store only when half of the lease's own count is gone: then it
    renews (nobody took the batch) or raises LeaseLost and forgets the lease."""
    store, other = backend.open("node-a"), backend.open("node-b")
    formed_batch(store, "job1", n=1)
    batch = acquired(store)
    clock.advance(LEASE_SECONDS / 2 - 1)
    store.keep_lease(batch.id)
    unchanged = store.batch(batch.id)
    assert unchanged is not None and unchanged.lease_until == batch.lease_until  # not asked
    clock.advance(2)
    store.keep_lease(batch.id)
    renewed = store.batch(batch.id)
    assert renewed is not None and renewed.lease_until == clock() + LEASE_SECONDS
    clock.advance(LEASE_SECONDS + 1)
    assert other.acquire_batch() is not None
    with pytest.raises(LeaseLost):
        store.keep_lease(batch.id)
    assert store.leases.get(batch.id) is None


def test_leases_of_another_instance_of_the_node_are_void_only_once_lapsed(
        backend: Backend, clock: Clock) -> None:
    """release_node_leases(every=False), after another instance had the name: a lease
    still running stays (its batch thread may be at work); a lapsed one is void."""
    store = backend.open("node-a")
    formed_batch(store, "job1", n=1)
    first = acquired(store)
    clock.advance(20)
    formed_batch(store, "job2", n=1)
    second = store.acquire_batch(frozenset({first.id}))
    assert second is not None
    clock.advance(15)  # job1's lease lapsed 5 s ago, job2's runs 15 s more
    assert store.release_node_leases(every=False) == 1
    lapsed, running = store.batch(first.id), store.batch(second.id)
    assert lapsed is not None and lapsed.claimed_by is None
    assert running is not None and (running.claimed_by or "").startswith("node-a/")
    assert store.release_node_leases(every=True) == 1


def test_begin_attempt_counts_and_renews(store: Store, clock: Clock) -> None:
    """begin_attempts counts a file's attempts and renews the batch's lease when half is gone."""
    batch = acquired_after(store)
    file_id = store.files_of_batch(batch.id)[0].id
    assert store.begin_attempts(batch, [file_id]) == [1]
    clock.advance(40)
    assert store.begin_attempts(batch, [file_id]) == [2]
    renewed = store.batch(batch.id)
    assert renewed is not None and renewed.lease_until == T0 + 40 + LEASE_SECONDS
    record = store.file(file_id)
    assert record is not None and record.attempts == 2
    events = store.events(kind="file.attempt", file_id=file_id)
    assert [e.detail for e in events] == ["1", "2"]


def _commit_sync(store: Store) -> object:
    """How this connection's next commit reaches the disk: SQLite's synchronous
    (2 FULL, 1 NORMAL), PostgreSQL's synchronous_commit; None for the memory store."""
    from folderseal.store.postgres import PostgresStore
    from folderseal.store.sqlite import SqliteStore
    if isinstance(store, SqliteStore):
        return store._db.execute("PRAGMA synchronous").fetchone()[0]
    if isinstance(store, PostgresStore):
        return store._conn.execute("SHOW synchronous_commit").fetchone()[0]
    return None


def test_attempts_are_counted_in_an_unsynced_commit_of_their_own(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting attempts does not wait for the disk (a sync per group of files in flight
    cost more than signing them); the setting holds for that commit only, and joined to
    an outer transaction it is as durable as that one."""
    strict = _commit_sync(store)
    assert strict in (2, "on", None)
    relaxed = {2: 1, "on": "off", None: None}[strict]
    with store.unsynced_transaction():  # type: ignore[attr-defined]
        assert _commit_sync(store) == relaxed
    assert _commit_sync(store) == strict
    with store.transaction(), store.unsynced_transaction():  # type: ignore[attr-defined]
        assert _commit_sync(store) == strict
    assert _commit_sync(store) == strict
    batch = acquired_after(store)
    file_id = store.files_of_batch(batch.id)[0].id
    seen = []
    unsynced = store.unsynced_transaction  # type: ignore[attr-defined]

    def spy() -> object:
        seen.append(True)
        return unsynced()
    monkeypatch.setattr(store, "unsynced_transaction", spy)
    assert store.begin_attempts(batch, [file_id]) == [1]
    assert seen and _commit_sync(store) == strict
    record = store.file(file_id)
    assert record is not None and record.attempts == 1


def test_a_lease_that_ran_out_while_the_count_waited_is_not_renewed_unsynced(
        store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease is renewed (if it needs it) in a commit that is waited on, before the
    unsynced one; a lease whose time ran out while that transaction waited is not renewed
    inside it, where a power cut could take the renewal back: LeaseLost, nothing counted."""
    batch = acquired_after(store)
    file_id = store.files_of_batch(batch.id)[0].id
    unsynced = store.unsynced_transaction  # type: ignore[attr-defined]

    def waited_a_whole_lease() -> object:
        clock.advance(LEASE_SECONDS)
        return unsynced()
    monkeypatch.setattr(store, "unsynced_transaction", waited_a_whole_lease)
    before = store.batch(batch.id)
    with pytest.raises(LeaseLost):
        store.begin_attempts(batch, [file_id])
    after, record = store.batch(batch.id), store.file(file_id)
    assert before is not None and after is not None and after.lease_until == before.lease_until
    assert record is not None and record.attempts == 0


def test_begin_attempt_without_the_lease_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """An attempt is not counted (or made) once the lease was taken over."""
    batch = acquired_after(store)
    file_id = store.files_of_batch(batch.id)[0].id
    take_over(backend, clock, batch)
    with pytest.raises(LeaseLost):
        store.begin_attempts(batch, [file_id])
    record = store.file(file_id)
    assert record is not None and record.attempts == 0


def test_begin_attempt_on_a_file_of_another_batch_is_refused(store: Store) -> None:
    """A file not waiting in this batch is a StateConflict."""
    batch = acquired_after(store)
    claim(store, "loose")
    with pytest.raises(StateConflict):
        store.begin_attempts(batch, ["loose"])


def acquired_after(store: Store) -> BatchRecord:
    formed_batch(store)
    return acquired(store)


def test_fail_batch_rejects_its_batched_files(store: Store) -> None:
    """fail_batch marks the batch FAILED at its step and every BATCHED file REJECTED with
    the reason."""
    batch = acquired_after(store)
    store.fail_batch(batch, "provider_refused", "the provider refused the batch")
    failed = store.batch(batch.id)
    assert failed is not None
    assert failed.state == BatchState.FAILED
    assert failed.failed_step == "BATCHED"
    assert (failed.error_code, failed.error_message) == (
        "provider_refused", "the provider refused the batch")
    members = store.files_of_batch(batch.id)
    assert len(members) == 2
    for record in members:
        assert record.state == FileState.REJECTED
        assert record.error_code == "provider_refused"
        assert record.result is not None and record.result.error_code == "provider_refused"
        assert record.result.entry == record.entry
    assert batch_events(store, batch.id) == [("BATCHED", "FAILED")]


def test_fail_batch_without_the_lease_is_refused(
        store: Store, backend: Backend, clock: Clock) -> None:
    """A node whose lease was taken over cannot fail the batch either."""
    batch = acquired_after(store)
    take_over(backend, clock, batch)
    with pytest.raises(LeaseLost):
        store.fail_batch(batch, "x", "y")
    stored = store.batch(batch.id)
    assert stored is not None and stored.state == BatchState.BATCHED
    assert all(r.state == FileState.BATCHED for r in store.files_of_batch(batch.id))


def test_set_file_state_is_guarded(store: Store) -> None:
    """A file state change that expects the wrong state raises StateConflict."""
    claim(store, "f1")
    with pytest.raises(StateConflict):
        store.set_file_state("f1", FileState.BATCHED, FileState.READY)
    store.set_file_state("f1", FileState.CLAIMED, FileState.FAILED)
    record = store.file("f1")
    assert record is not None and record.state == FileState.FAILED


def test_acquire_skips_batches_busy_in_this_process(store: Store, clock: Clock) -> None:
    """A batch another thread of this process works on is never handed out again."""
    formed_batch(store, "job1", n=1)
    formed_batch(store, "job2", n=1)
    first = store.acquire_batch()
    assert first is not None
    clock.advance(LEASE_SECONDS + 1)  # its lease lapsed during a long step
    second = store.acquire_batch(frozenset({first.id}))
    assert second is not None and second.id != first.id
    assert store.acquire_batch(frozenset({first.id, second.id})) is None


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


def test_an_abandon_told_to_keep_the_attempts_so_its_pauses_grow(
        store: Store, clock: Clock) -> None:
    """An abandon clears the error and starts the attempts from 0, unless told to keep
    them (past MAX_LOST_ANSWERS each abandon pauses by them, so the pauses grow)."""
    formed_batch(store)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED, detail="created", remote_id="r1")
    batch = store.batch(batch.id)
    assert batch is not None
    store.postpone(batch, lambda n: 1.0, "transient", "answer lost")
    clock.advance(1)
    batch = acquired(store)
    store.abandon(batch, "r2", lost_answer=True, why="answer lost", keep_attempts=True)
    stored = store.batch(batch.id)
    assert stored is not None and stored.remote_id == "r2"
    assert (stored.attempts, stored.error_code) == (1, None)
    assert store.postpone(stored, lambda n: 10.0 * n, "transient", "answer lost") == (
        2, T0 + 1 + 20)
    clock.advance(20)
    batch = acquired(store)
    store.abandon(batch, "r3", lost_answer=True, why="answer lost")
    stored = store.batch(batch.id)
    assert stored is not None and (stored.attempts, stored.remote_id) == (0, "r3")


def test_abandons_are_counted_by_cause_and_the_detail_is_kept(store: Store) -> None:
    """An abandon moves the batch to CREATED with the new remote id, counts its cause in a
    column, and its event keeps the reason (a remote id beside it, not instead of it)."""
    formed_batch(store)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED, detail="created", remote_id="r1")
    batch = store.batch(batch.id)
    assert batch is not None
    store.abandon(batch, "r2", lost_answer=True, why="answer lost")
    batch = store.batch(batch.id)
    assert batch is not None and batch.state == BatchState.CREATED and batch.remote_id == "r2"
    store.abandon(batch, "r3", lost_answer=False, why="wrong list")
    assert store.abandons(batch.id) == (1, 1)
    details = [e.detail for e in store.events(kind="batch.state", batch_id=batch.id)]
    assert details[-3:] == ["created; remote r1", "abandoned r1 (answer lost): answer lost; "
                            "remote r2", "abandoned r2 (mismatch): wrong list; remote r3"]
