"""The store's contract, run on every backend (SqliteStore, PostgresStore and
MemoryStore): transactions and connections, the queries of files, what a batch went
through with its provider, ``folderseal recover`` and ``folderseal retry``'s records,
heartbeats, and what status reads. Claims, batches and leases are in test_store_contract.py."""

from __future__ import annotations

import re
import threading

import pytest

from folderseal import __version__
from folderseal.core.errors import LeaseLost, NodeNameTaken, StateConflict
from folderseal.core.model import BatchRecord, BatchState, DocumentResult, FileState
from folderseal.core.redact import REDACTOR
from folderseal.store import Store
from folderseal.store.memory import QUERIES as MEMORY_QUERIES
from folderseal.store.sqlite import QUERIES as SQLITE_QUERIES
from tests.store_backends import (
    DUPLICATE,
    T0,
    Backend,
    Clock,
    acquired,
    batch_events,
    claim,
    formed_batch,
)


def _state(store: Store, file_id: str) -> FileState:
    record = store.file(file_id)
    assert record is not None
    return record.state


def _batch(store: Store, batch_id: str) -> BatchRecord:
    batch = store.batch(batch_id)
    assert batch is not None
    return batch


def _failed(store: Store, batch_id: str = "job1") -> BatchRecord:
    """A batch failed with both its files in errors, unleased and never due."""
    formed_batch(store, batch_id)
    batch = store.acquire_batch(frozenset(store.batch_ids() - {batch_id}))
    assert batch is not None
    store.fail_batch(batch, "provider_refused", "no")
    for record in store.files_of_batch(batch_id):
        store.set_file_state(record.id, FileState.REJECTED, FileState.FAILED, batch_id=batch_id)
    store.release(batch, None)
    return _batch(store, batch_id)


# -- the backends, transactions, connections ------------------------------------------------

def test_the_fake_answers_every_query_the_sql_has() -> None:
    """MemoryStore has a Python answer for each named query of queries.sql, and no other."""
    assert set(MEMORY_QUERIES) == set(SQLITE_QUERIES)


def test_store_id_is_the_same_on_every_connection(store: Store, backend: Backend) -> None:
    """A store has one random id, whichever connection asks."""
    assert re.fullmatch(r"[0-9a-f]{32}", store.store_id)
    assert backend.open("node-b").store_id == store.store_id


def test_a_transaction_that_raises_leaves_nothing(store: Store) -> None:
    """Everything written in a transaction that raises is undone, events too."""
    with pytest.raises(RuntimeError), store.transaction():
        claim(store, "f1")
        store.event("file.note", file_id="f1")
        raise RuntimeError("stop")
    assert store.file("f1") is None and store.events(file_id="f1") == []
    claim(store, "f1")  # the id is free
    assert _state(store, "f1") == FileState.CLAIMED


def test_nested_transactions_join_the_outer_one(store: Store) -> None:
    """An inner transaction that ended is undone with the outer one that raises."""
    with pytest.raises(StateConflict), store.transaction():
        with store.transaction():
            claim(store, "f1")
        store.set_file_state("f1", FileState.BATCHED, FileState.READY)
    assert store.file("f1") is None


def test_connections_share_records_but_not_leases(store: Store, backend: Backend) -> None:
    """Another connection sees every record at once, but holds none of this one's leases."""
    formed_batch(store)
    batch = acquired(store)
    other = backend.open("node-b")
    assert other.node == "node-b" and other.batch_ids() == {batch.id}
    with pytest.raises(LeaseLost):
        other.renew_lease(batch.id)
    assert store.connect().batch_ids() == {batch.id}


def test_threads_each_with_a_connection_share_the_batches_out_once(store: Store) -> None:
    """Connections on threads of their own claim and lease concurrently: every claim is
    kept, and each due batch is handed to one of them only."""
    for n in range(6):
        formed_batch(store, f"batch{n}", n=1)
    taken: list[str] = []
    errors: list[BaseException] = []

    def work(node: str) -> None:
        mine = store.connect(node)
        try:
            for n in range(5):
                claim(mine, f"{node}-{n}")
            while (batch := mine.acquire_batch()) is not None:
                taken.append(batch.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=work, args=(f"node-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(taken) == [f"batch{n}" for n in range(6)]
    assert len(store.file_ids("scans")) == 6 + 4 * 5


def test_the_store_answers(store: Store) -> None:
    """A store that works has no reason not to answer."""
    assert store.why_unavailable() is None


def test_events_keep_their_node_and_make_names_printable(store: Store, backend: Backend,
                                                         clock: Clock) -> None:
    """An event records when, which node, and its detail with undecodable bytes as \\xNN;
    events() filters by batch, file and kind together, in order."""
    claim(store, "f1")
    clock.advance(5)
    backend.open("node-b").event("file.note", file_id="f1", detail="caf\udce9")
    notes = store.events(file_id="f1", kind="file.note")
    assert [(e.at, e.node, e.detail) for e in notes] == [(T0 + 5, "node-b", "caf\\xe9")]
    assert [e.kind for e in store.events(file_id="f1")] == ["file.claimed", "file.note"]
    assert store.events(batch_id="nothing") == []


# -- files ---------------------------------------------------------------------------------

def test_files_in_state_in_claim_order_and_by_folder(store: Store, clock: Clock) -> None:
    """files_in_state lists one folder's files in one state, by claim time then id."""
    claim(store, "b")
    claim(store, "a")
    claim(store, "other", folder="letters")
    clock.advance(1)
    claim(store, "0")
    assert [r.id for r in store.files_in_state("scans", FileState.CLAIMED)] == ["a", "b", "0"]
    assert store.file_ids("scans") == {"a", "b", "0"}
    assert store.known_ids(["a", "other", "unknown"]) == {"a", "other"}
    assert store.count_in_flight("scans") == 3
    store.set_file_state("b", FileState.CLAIMED, FileState.DONE)
    assert store.count_in_flight("scans") == 2
    assert store.count_by_state() == {"scans": {"CLAIMED": 2, "DONE": 1},
                                      "letters": {"CLAIMED": 1}}


def test_unfinished_claims_and_the_guarded_hash(store: Store) -> None:
    """A claim never hashed, or rejected outside a batch, is unfinished; a hash is recorded
    only while the file is CLAIMED."""
    store.add_claim(id="raw", folder="scans", source="raw.pdf", dev=1, ino=1, size=1,
                    mtime_ns=1, sha256=None, seen_at=T0)
    claim(store, "hashed")
    claim(store, "bad")
    store.set_file_state("bad", FileState.CLAIMED, FileState.REJECTED)
    assert {r.id for r in store.unfinished_claims("scans")} == {"raw", "bad"}
    store.set_claim_hash("raw", "cd" * 32, 2, 3)
    record = store.file("raw")
    assert record is not None and (record.sha256, record.size, record.mtime_ns) == (
        "cd" * 32, 2, 3)
    assert {r.id for r in store.unfinished_claims("scans")} == {"bad"}
    with pytest.raises(StateConflict):
        store.set_claim_hash("bad", "ef" * 32, 1, 1)


def test_recent_claims_are_those_after_the_time(store: Store, clock: Clock) -> None:
    """recent_claims gives (id, source, claimed_at) of a folder's claims after a time (ids
    begin with their claim time, as new_id makes them)."""
    def at_now(n: int) -> str:
        return f"{int(clock() * 1000):012x}{n:012x}"

    early = at_now(1)
    claim(store, early, source="early.pdf")
    clock.advance(10)
    late = at_now(2)
    claim(store, late, source="caf\udce9.pdf")
    assert store.recent_claims("scans", T0 + 5) == [(late, "caf\udce9.pdf", T0 + 10)]
    assert store.recent_claims("letters", T0 - 5) == []


def test_a_delivered_twin_has_the_same_hash_in_the_same_folder(store: Store) -> None:
    """delivered_twin finds a published or done file with the same input hash, never the
    file itself, one of another folder, or for a file without a hash."""
    claim(store, "first")
    claim(store, "second")
    claim(store, "elsewhere", folder="letters")
    second = store.file("second")
    assert second is not None and store.delivered_twin(second) is None
    store.set_file_state("elsewhere", FileState.CLAIMED, FileState.DONE)
    assert store.delivered_twin(second) is None
    store.set_file_state("first", FileState.CLAIMED, FileState.PUBLISHED)
    twin = store.delivered_twin(second)
    assert twin is not None and twin.id == "first"
    first = store.file("first")
    assert first is not None and store.delivered_twin(first) is None
    store.add_claim(id="raw", folder="scans", source="raw.pdf", dev=1, ino=1, size=1,
                    mtime_ns=1, sha256=None, seen_at=T0)
    raw = store.file("raw")
    assert raw is not None and store.delivered_twin(raw) is None


def test_a_result_makes_a_file_ready_or_rejected(store: Store) -> None:
    """A good result makes a waiting file READY; a failure makes it REJECTED with its code
    and its message redacted; both guarded by the state expected, with their events."""
    batch = formed_batch(store)
    good, bad = (r.id for r in store.files_of_batch(batch.id))
    store.set_file_result(good, FileState.BATCHED, DocumentResult(entry="e0"), batch_id=batch.id)
    message = "refused at https://provider.example/batch?X-Amz-Signature=abcdef123456"
    store.set_file_result(bad, FileState.BATCHED,
                          DocumentResult(entry="e1", error_code="refused",
                                         error_message=message), batch_id=batch.id)
    ready, rejected = store.file(good), store.file(bad)
    assert ready is not None and ready.state == FileState.READY and ready.error_code is None
    assert ready.result == DocumentResult(entry="e0")
    assert rejected is not None and rejected.state == FileState.REJECTED
    assert (rejected.error_code, rejected.error_message) == ("refused", REDACTOR.text(message))
    assert [(e.from_state, e.to_state, e.detail) for e in store.events(
        file_id=bad, kind="file.state")] == [("BATCHED", "REJECTED", "refused")]
    with pytest.raises(StateConflict):
        store.set_file_result(good, FileState.BATCHED, DocumentResult(entry="e0"))


def test_failed_files_are_listed_the_longest_failed_first(store: Store, clock: Clock) -> None:
    """failed_files lists every FAILED file of every folder, by when it failed."""
    claim(store, "later")
    claim(store, "sooner", folder="letters")
    claim(store, "fine")
    store.set_file_state("sooner", FileState.CLAIMED, FileState.FAILED)
    clock.advance(1)
    store.set_file_state("later", FileState.CLAIMED, FileState.FAILED)
    assert [r.id for r in store.failed_files()] == ["sooner", "later"]


def test_output_names_taken_by_another_refuse_the_whole_plan(store: Store) -> None:
    """Planning a name another unfinished file holds fails (as a key taken), and nothing
    of the plan is kept; a file that is not waiting takes no plan at all."""
    claim(store, "f1", "scan.pdf")
    claim(store, "f2", "scan.pdf")
    first, second = store.file("f1"), store.file("f2")
    assert first is not None and second is not None
    store.set_file_outputs(first, [{"role": "signed", "path": "scan.pdf"}], "outbox")
    with pytest.raises(DUPLICATE):
        store.set_file_outputs(second, [{"role": "signed", "path": "scan (1).pdf"},
                                        {"role": "sidecar", "path": "scan.pdf"}], "outbox")
    kept = store.file("f2")
    assert kept is not None and kept.outputs == ()
    assert store.names_free("scans", "outbox", "f1", ["scan (1).pdf"])
    store.set_file_state("f2", FileState.CLAIMED, FileState.DONE)
    done = store.file("f2")
    assert done is not None
    with pytest.raises(StateConflict):
        store.set_file_outputs(done, [{"role": "signed", "path": "x.pdf"}], "outbox")


def test_remote_documents_are_kept_for_files_waiting_in_the_batch(store: Store) -> None:
    """The provider's latest answer for a file is kept while it waits in its batch."""
    batch = formed_batch(store)
    formed_batch(store, "job2", n=1)
    file_id = store.files_of_batch(batch.id)[0].id
    store.note_remote_document(batch.id, file_id, {"batch": "r1", "id": None})
    store.note_remote_document(batch.id, file_id, {"batch": "r1", "id": "d7"})
    assert store.remote_documents(batch.id) == {file_id: {"batch": "r1", "id": "d7"}}
    assert store.remote_documents("job2") == {}
    with pytest.raises(StateConflict):
        store.note_remote_document("job2", file_id, {"batch": "r2"})


# -- batches: due times, recover, what a batch went through ---------------------------------

def test_released_batches_are_due_again_or_never(store: Store, clock: Clock) -> None:
    """A released batch is due again when told, or never (None): then no folder owns it
    among the open batches, and none is due."""
    formed_batch(store, "job1", n=1)
    formed_batch(store, "job2", n=1)
    assert store.open_batch_owners() == [("scans", "local", 2)]
    first = acquired(store)
    assert store.next_due() == T0  # the other one
    second = acquired(store)
    assert store.next_due() is None  # both leased
    store.release(first, T0 + 20)
    store.release(second, None)
    assert store.next_due() == T0 + 20
    assert store.open_batch_owners() == [("scans", "local", 1)]
    clock.advance(20)
    again = acquired(store)
    assert again.id == first.id and store.acquire_batch() is None


def test_resume_batch_moves_a_batch_on_unleased_and_due(store: Store, clock: Clock) -> None:
    """folderseal recover moves a batch on from the state it is in, due at once, no lease,
    no attempts; a batch no longer in that state is a StateConflict."""
    formed_batch(store)
    batch = acquired(store)
    store.postpone(batch, lambda n: 100.0, "transient", "down")
    clock.advance(5)
    stale = _batch(store, batch.id)
    store.resume_batch(stale, BatchState.CREATED, "the provider knows it")
    resumed = _batch(store, batch.id)
    assert (resumed.state, resumed.claimed_by, resumed.lease_until) == (
        BatchState.CREATED, None, None)
    assert (resumed.next_attempt_at, resumed.attempts) == (T0 + 5, 0)
    assert store.events(batch_id=batch.id, kind="batch.state")[-1].detail == \
        "folderseal recover: the provider knows it"
    with pytest.raises(StateConflict):
        store.resume_batch(stale, BatchState.CREATED, "again")


def test_restore_batch_records_a_lost_batch_with_its_files(store: Store) -> None:
    """folderseal recover records again a batch a lost store knew: its files, their entry
    names, and the state, remote id and publish key the provider's answer gives it."""
    files = [{"id": f"r{i}", "folder": "scans", "source": f"r{i}.pdf", "dev": 1, "ino": i,
              "size": 10, "mtime_ns": 1, "sha256": "ab" * 32, "seen_at": T0,
              "entry": f"{i:04d}_r{i}.pdf"} for i in range(2)]
    store.restore_batch(batch_id="lost", folder="scans", provider="seal", state=BatchState.UPLOADED,
                      remote_id="R-9", files=files, why="the provider has it",
                      publish_key="k/lost.zip")
    batch = _batch(store, "lost")
    assert (batch.state, batch.remote_id, batch.publish_key) == (BatchState.UPLOADED, "R-9",
                                                           "k/lost.zip")
    assert [(r.id, r.state, r.entry) for r in store.files_of_batch("lost")] == [
        ("r0", FileState.BATCHED, "0000_r0.pdf"), ("r1", FileState.BATCHED, "0001_r1.pdf")]
    assert batch_events(store, "lost") == [("BATCHED", "UPLOADED")]
    assert store.events(batch_id="lost", kind="batch.state")[0].detail == \
        "restored by folderseal recover: the provider has it"
    assert store.publish_keys() == {"k/lost.zip"}


def test_the_package_is_recorded_only_while_batched_and_leased(store: Store) -> None:
    """set_package needs the batch BATCHED and its lease held."""
    formed_batch(store)
    batch = acquired(store)
    store.set_package(batch, "cd" * 32, 1234)
    packaged = _batch(store, batch.id)
    assert (packaged.package_sha256, packaged.package_bytes) == ("cd" * 32, 1234)
    store.transition(batch, BatchState.CREATED)
    with pytest.raises(LeaseLost):
        store.set_package(batch, "ef" * 32, 1)


def test_an_upload_keeps_the_time_it_was_first_sent_to_a_remote(store: Store,
                                                                 clock: Clock) -> None:
    """note_upload records when an upload to a remote batch was first about to be sent;
    again to the same remote keeps that time, to another starts anew."""
    formed_batch(store)
    batch = acquired(store)
    store.transition(batch, BatchState.CREATED, remote_id="r1")
    created = _batch(store, batch.id)
    store.note_upload(created, "r1")
    clock.advance(10)
    store.note_upload(created, "r1")
    assert store.upload_sent_at(batch.id, "r1") == T0
    store.note_upload(created, "r2")
    assert store.upload_sent_at(batch.id, "r2") == T0 + 10
    assert store.upload_sent_at(batch.id, "r1") is None
    assert [e.detail for e in store.events(batch_id=batch.id, kind="batch.upload_sent")] == [
        "r1", "r1", "r2"]
    store.transition(created, BatchState.UPLOADED)
    with pytest.raises(LeaseLost):
        store.note_upload(created, "r3")


def test_progress_publish_key_and_remote_id_need_the_lease(
        store: Store, backend: Backend, clock: Clock) -> None:
    """How far the provider is, the key a batch is published under and the remote batch
    an accept made are recorded by the lease holder only."""
    formed_batch(store)
    batch = acquired(store)
    assert store.progress(batch.id) is None
    store.set_progress(batch, 40)
    store.set_publish_key(batch, "pub/job1.zip")
    store.set_remote_id(batch, "R-1")
    assert store.progress(batch.id) == 40
    assert store.publish_keys() == {"pub/job1.zip"}
    assert _batch(store, batch.id).remote_id == "R-1"
    assert [e.detail for e in store.events(batch_id=batch.id, kind="batch.remote_created")] == [
        "R-1"]
    store.set_publish_key(batch, None)
    assert store.publish_keys() == set()
    clock.advance(60)
    assert backend.open("node-b").acquire_batch() is not None
    for write in (lambda: store.set_progress(batch, 50),
                  lambda: store.set_publish_key(batch, "x"),
                  lambda: store.set_remote_id(batch, "R-2")):
        with pytest.raises(LeaseLost):
            write()
    assert store.progress(batch.id) == 40 and _batch(store, batch.id).remote_id == "R-1"


def test_forgiven_attempts_are_taken_back_never_below_zero(store: Store) -> None:
    """forgive_attempts takes one attempt back from each file, stopping at zero."""
    formed_batch(store)
    batch = acquired(store)
    first, second = (r.id for r in store.files_of_batch(batch.id))
    store.begin_attempts(batch, [first])
    store.forgive_attempts(batch, [first, second])
    assert [r.attempts for r in store.files_of_batch(batch.id)] == [0, 0]
    assert len(store.events(batch_id=batch.id, kind="file.attempt_forgiven")) == 2


# -- folderseal retry ------------------------------------------------------------------------

def test_a_retry_into_its_batch(store: Store, clock: Clock) -> None:
    """A retry marks failed files RETRYING with where they go, then they wait in their
    batch again and the batch is due at once, its failure forgotten."""
    batch = _failed(store)
    ids = [r.id for r in store.files_of_batch(batch.id)]
    store.begin_retry([(r, {"role": "retry", "to": "batch"})
                       for r in store.files_of_batch(batch.id)])
    retrying = store.files_of_batch(batch.id)
    assert {r.state for r in retrying} == {FileState.RETRYING}
    assert retrying[0].outputs[-1] == {"role": "retry", "to": "batch"}
    clock.advance(3)
    store.finish_batch_retry(batch, ids, BatchState.BATCHED)
    again = _batch(store, batch.id)
    assert (again.state, again.next_attempt_at, again.attempts) == (BatchState.BATCHED, T0 + 3, 0)
    assert (again.failed_step, again.error_code) == (None, None)
    for record in store.files_of_batch(batch.id):
        assert record.state == FileState.BATCHED and record.result is None
        assert record.outputs == () and record.error_code is None
    assert batch_events(store, batch.id)[-1] == ("FAILED", "BATCHED")


def test_a_batch_is_reopened_only_when_failed_or_cleaned_and_unleased(store: Store) -> None:
    """reopen_batch refuses a batch still at work, or not in the state the caller saw."""
    formed_batch(store)
    batch = acquired(store)
    with pytest.raises(StateConflict):
        store.reopen_batch(batch, BatchState.BATCHED)
    failed = _failed(store, "job2")
    store.reopen_batch(failed, BatchState.BATCHED)
    with pytest.raises(StateConflict):
        store.reopen_batch(failed, BatchState.BATCHED)


def test_undo_and_refusals_of_a_retry(store: Store) -> None:
    """A retry of files not failed is refused whole; one undone fails the files again."""
    batch = _failed(store)
    claim(store, "fresh")
    fresh = store.file("fresh")
    failed = store.files_of_batch(batch.id)
    assert fresh is not None
    with pytest.raises(StateConflict):
        store.begin_retry([(failed[0], {"role": "retry", "to": "inbox"}),
                           (fresh, {"role": "retry", "to": "inbox"})])
    assert _state(store, failed[0].id) == FileState.FAILED
    store.begin_retry([(r, {"role": "retry", "to": "inbox"}) for r in failed])
    store.undo_retry([r.id for r in failed], "the inbox is full")
    assert {_state(store, r.id) for r in failed} == {FileState.FAILED}
    assert store.events(file_id=failed[0].id)[-1].detail == "retry undone: the inbox is full"


def test_wake_batch_makes_a_waiting_batch_due_now(store: Store, clock: Clock) -> None:
    """A batch waiting out a backoff is due now; one not waiting, or failed, is not woken."""
    formed_batch(store)
    batch = acquired(store)
    store.postpone(batch, lambda n: 100.0, "transient", "down")
    clock.advance(1)
    assert store.wake_batch(batch.id) is True
    assert _batch(store, batch.id).next_attempt_at == T0 + 1
    assert [e.detail for e in store.events(batch_id=batch.id, kind="batch.woken")] == ["retry"]
    assert store.wake_batch(batch.id) is False  # due already
    failed = _failed(store, "job2")
    assert store.wake_batch(failed.id) is False


def test_an_error_place_is_recorded_without_changing_when_it_failed(
        store: Store, clock: Clock) -> None:
    """set_error_place replaces a failure's error output while it is FAILED or CLEARED,
    leaving the time it failed as it was."""
    claim(store, "f1")
    claimed = store.file("f1")
    assert claimed is not None
    sidecar = {"role": "sidecar", "path": "scan.pdf.json"}
    store.set_file_outputs(claimed, [{"role": "error", "path": "scan.pdf"}, sidecar], "errors")
    store.set_file_state("f1", FileState.CLAIMED, FileState.FAILED)
    failed = store.file("f1")
    assert failed is not None
    clock.advance(30)
    place = {"role": "error", "path": "scan.pdf", "folder_id": "F"}
    store.set_error_place(failed, place)
    assert [(r.outputs, at) for r, at in store.last_changed("scans", FileState.FAILED, 10)] \
        == [((place, sidecar), T0)]


def test_heartbeats_replace_the_last_one_of_the_node(store: Store, backend: Backend,
                                                     clock: Clock) -> None:
    """Each node keeps its last heartbeat: pid, start, when, its notes, and which
    instance of which version beats."""
    store.register_node("i-a", 42, T0 - 50, alive_seconds=30)
    store.heartbeat(42, T0 - 50, {"folders": {}})
    clock.advance(2)
    store.heartbeat(42, T0 - 50, {"warnings": ["w"]})
    other = backend.open("node-0")
    other.register_node("i-0", 7, T0, alive_seconds=30)
    other.heartbeat(7, T0, {})
    rows = store.nodes()
    assert [(r["node"], r["pid"], r["started_at"], r["heartbeat_at"], r["notes"])
            for r in rows] == [("node-0", 7, T0, T0 + 2, {}),
                               ("node-a", 42, T0 - 50, T0 + 2, {"warnings": ["w"]})]
    assert [r["instance"] for r in rows] == ["i-0", "i-a"]
    assert all(r["version"] == __version__ and r["schema_version"] >= 0 for r in rows)


def test_a_node_name_belongs_to_one_live_instance(backend: Backend, clock: Clock) -> None:
    """A second instance of a node name is refused while the first beats; once the
    first has been silent longer than alive_seconds it takes the name, and the first's
    next heartbeat learns it lost it."""
    first, second = backend.open("scan-1"), backend.open("scan-1")
    first.register_node("i-1", 10, T0, alive_seconds=30)
    clock.advance(20)
    first.heartbeat(10, T0, {})
    clock.advance(29)
    with pytest.raises(NodeNameTaken) as refused:
        second.register_node("i-2", 11, T0 + 49, alive_seconds=30)
    assert refused.value.exit_code == 78 and "'scan-1'" in str(refused.value)
    clock.advance(2)  # the first has been silent 31 s
    assert not second.register_node("i-2", 11, T0 + 51, alive_seconds=30)  # no restart
    with pytest.raises(NodeNameTaken):
        first.heartbeat(10, T0, {})
    second.heartbeat(11, T0 + 51, {})
    assert [(r["node"], r["pid"]) for r in first.nodes()] == [("scan-1", 11)]


def test_a_row_of_a_version_before_instances_is_taken_at_once(backend: Backend,
                                                             clock: Clock) -> None:
    """An upgrade restarts a node within seconds of its last heartbeat, written by a
    version that recorded no instance (''): the name is taken, as a restart."""
    old = backend.open("scan-1")
    assert old.register_node("", 10, T0, alive_seconds=30)
    clock.advance(1)
    upgraded = backend.open("scan-1")
    assert upgraded.register_node("i-1", 12, T0 + 1, alive_seconds=30)
    assert [r["instance"] for r in upgraded.nodes()] == ["i-1"]


def test_a_node_restarted_from_its_state_folder_takes_its_name_at_once(
        backend: Backend, clock: Clock) -> None:
    """The same instance (the same state folder, after a crash) takes its name back
    however fresh its last heartbeat."""
    crashed = backend.open("scan-1")
    crashed.register_node("i-1", 10, T0, alive_seconds=30)
    crashed.heartbeat(10, T0, {})
    clock.advance(1)
    restarted = backend.open("scan-1")
    assert restarted.register_node("i-1", 12, T0 + 1, alive_seconds=30)
    restarted.heartbeat(12, T0 + 1, {})
    assert [r["pid"] for r in restarted.nodes()] == [12]


def test_recover_holds_off_node_starts_and_other_recovers(backend: Backend) -> None:
    """On a shared store (PostgreSQL) one recover at a time holds it, and a node's start
    check sees that it does; on a store one daemon holds alone (SQLite, memory) the
    state folder's lock already keeps them apart, so every lock is granted."""
    recovering, other = backend.open("node-a"), backend.open("node-b")
    shared = backend.kind == "postgres"
    assert recovering.lock_recover()
    assert other.lock_recover() is not shared
    with other.transaction():
        assert other.lock_node_starts() is not shared
    if not shared:
        other.unlock_recover()
    recovering.unlock_recover()
    with other.transaction():
        assert other.lock_node_starts()
    assert other.lock_recover()  # free again: the start's lock ended with its transaction
    other.unlock_recover()
