"""The store's contract for what ``folderseal status`` reads, run on every backend
(SqliteStore, PostgresStore and MemoryStore): counts, the batches still open, recent
failures, records a provider could not load, suspected fragments, deliveries per minute,
stale retries."""

from __future__ import annotations

from folderseal.core.model import BatchState, DocumentResult, FileState
from folderseal.store import Store
from tests.store_backends import T0, Clock, acquired, claim, formed_batch


def _in_state(store: Store, file_id: str, state: FileState, folder: str = "scans") -> None:
    claim(store, file_id, folder=folder)
    store.set_file_state(file_id, FileState.CLAIMED, state)


def test_batches_are_counted_by_folder_and_state(store: Store) -> None:
    """How many batches of each folder are in each state."""
    formed_batch(store, "job1", n=1)
    formed_batch(store, "job2", n=1)
    store.transition(acquired(store), BatchState.CREATED)
    assert store.count_batches_by_state() == {"scans": {"BATCHED": 1, "CREATED": 1}}


def test_active_batches_are_the_unfinished_or_due_oldest_first(store: Store, clock: Clock) -> None:
    """Open batches, and finished ones due again, oldest first, with how many files each
    holds and the provider's progress; finished ones never due again are left out."""
    formed_batch(store, "job1", n=2)
    clock.advance(1)
    formed_batch(store, "job2", n=1)
    clock.advance(1)
    formed_batch(store, "job3", n=1)
    first = acquired(store)
    store.set_progress(first, 25)
    second, third = acquired(store), acquired(store)
    store.fail_batch(second, "refused", "no")
    store.release(second, None)
    store.transition(third, BatchState.CLEANED)
    store.release(third, T0 + 100)  # a finished batch that is due again
    listed = store.active_batches("scans")
    assert [(a.batch.id, a.files, a.progress) for a in listed] == [
        ("job1", 2, 25.0), ("job3", 1, None)]
    assert listed[0].batch.state == BatchState.BATCHED
    assert store.active_batches("letters") == []


def test_last_changed_lists_the_latest_first_up_to_the_limit(
        store: Store, clock: Clock) -> None:
    """(record, when) of a folder's files in a state, the latest change first."""
    for name in ("a", "b", "c"):
        _in_state(store, name, FileState.FAILED)
        clock.advance(10)
    _in_state(store, "elsewhere", FileState.FAILED, folder="letters")
    _in_state(store, "fine", FileState.DONE)
    assert [(r.id, at) for r, at in store.last_changed("scans", FileState.FAILED, 2)] == [
        ("c", T0 + 20), ("b", T0 + 10)]


def test_records_failed_are_delivered_files_the_provider_could_not_load(
        store: Store, clock: Clock) -> None:
    """Delivered files whose provider's report counts records it could not load: how many
    and when, the latest first; none for a count of zero or a file not delivered."""
    batch = formed_batch(store, n=4)
    files = [r.id for r in store.files_of_batch(batch.id)]
    for n, (file_id, bad) in enumerate(zip(files, (2, 0, 5, 3), strict=True)):
        clock.advance(1)
        result = DocumentResult(entry=f"e{n}", provider_block={"report": {"errorCount": bad}})
        store.set_file_result(file_id, FileState.BATCHED, result)
        if n < 3:
            store.set_file_state(file_id, FileState.READY,
                                 FileState.DONE if n else FileState.PUBLISHED)
    assert store.records_failed("scans", 10) == [(files[2], f"{files[2]}.pdf", 5, T0 + 3),
                                                 (files[0], f"{files[0]}.pdf", 2, T0 + 1)]
    assert len(store.records_failed("scans", 1)) == 1


def test_the_oldest_in_flight_claim(store: Store, clock: Clock) -> None:
    """When the oldest file not yet delivered was claimed; None when all are."""
    assert store.oldest_in_flight("scans") is None
    _in_state(store, "gone", FileState.DONE)
    clock.advance(5)
    claim(store, "waiting")
    clock.advance(5)
    _in_state(store, "bad", FileState.REJECTED)
    assert store.oldest_in_flight("scans") == T0 + 5
    assert store.oldest_in_flight("letters") is None


def test_suspected_fragments_since_a_time_newest_first(store: Store, clock: Clock) -> None:
    """(the earlier claim, when, why) of each fragment suspected in a folder since a time,
    the newest first."""
    claim(store, "old")
    claim(store, "earlier", source="scan\udce9.pdf")
    claim(store, "other", folder="letters")
    store.event("file.fragment_suspected", file_id="old", detail="long ago")
    clock.advance(100)
    store.event("file.fragment_suspected", file_id="earlier", detail="same name")
    store.event("file.fragment_suspected", file_id="other", detail="another folder")
    clock.advance(1)
    store.event("file.fragment_suspected", file_id="earlier", detail="again")
    store.event("file.claimed", file_id="earlier")
    assert store.suspected_fragments("scans", T0 + 50) == [
        ("earlier", "scan\udce9.pdf", T0 + 101, "again"),
        ("earlier", "scan\udce9.pdf", T0 + 100, "same name")]


def test_changes_per_minute_count_the_last_minutes_oldest_first(
        store: Store, clock: Clock) -> None:
    """Files of a folder in a state counted by the minute they last changed in."""
    for name, ago in (("a", 30), ("b", 50), ("c", 90), ("d", 7200)):
        clock.now = T0 - ago
        _in_state(store, name, FileState.DONE)
    clock.now = T0 - 10
    _in_state(store, "failed", FileState.FAILED)
    assert store.changes_per_minute("scans", FileState.DONE, T0, 60) == [0] * 58 + [1, 2]
    assert store.changes_per_minute("scans", FileState.DONE, T0, 2) == [1, 2]
    assert store.changes_per_minute("letters", FileState.DONE, T0, 60) == [0] * 60


def test_count_stale_counts_files_unchanged_since(store: Store, clock: Clock) -> None:
    """Files of a folder in a state that last changed before a time."""
    _in_state(store, "a", FileState.RETRYING)
    clock.advance(100)
    _in_state(store, "b", FileState.RETRYING)
    _in_state(store, "c", FileState.RETRYING, folder="letters")
    assert store.count_stale("scans", FileState.RETRYING, T0 + 50) == 1
    assert store.count_stale("scans", FileState.RETRYING, T0 + 101) == 2
    assert store.count_stale("scans", FileState.FAILED, T0 + 101) == 0


def test_outputs_in_state_are_each_files_planned_outputs(store: Store) -> None:
    """The outputs planned for each file of a folder in a state (none planned: empty)."""
    claim(store, "planned")
    claim(store, "bare")
    claim(store, "other", folder="letters")
    planned = store.file("planned")
    assert planned is not None
    error = {"role": "error", "path": "scan.pdf", "folder_id": "F"}
    store.set_file_outputs(planned, [error], "errors")
    for file_id in ("planned", "bare", "other"):
        store.set_file_state(file_id, FileState.CLAIMED, FileState.FAILED)
    assert sorted(store.outputs_in_state("scans", FileState.FAILED), key=len) == [(), (error,)]
    assert store.outputs_in_state("scans", FileState.DONE) == []
