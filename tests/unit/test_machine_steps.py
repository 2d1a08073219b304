"""The state machine's rules (folderseal.batches.machine.Machine), built from its parts on
the in-memory store with the scripted provider (tests/scripted.py) and a real work
folder, outbox and errors folder: each step ends in a recorded transition; a transient
failure waits with backoff, its attempts counted; a permanent one fails the batch, its
files to errors, saying "may have been signed" once ACCEPTING was stored; a lease lost
mid-step, or a daemon stopping, ends the turn without touching the batch again.

What happens to answers lost before accept (abandons, and their limits) and to an
accept in doubt is in test_machine_abandons.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from folderseal.core.errors import ProviderError, Throttled, TransientError
from folderseal.core.model import BatchRecord, BatchState, FileState
from folderseal.providers import Steps
from folderseal.store import LEASE_SECONDS
from folderseal.store.memory import MemoryStore
from tests.batch_parts import Parts, batched, build, drive
from tests.scripted import SIGNED, Outcome, Scripted
from tests.store_backends import batch_events

FILES = {"a.txt": b"page a\n", "sub/b.txt": b"page b\n"}
MAY_HAVE_RUN = ("; its files may have been stored: check with the provider; "
                "`folderseal retry` asks the same batch again")


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return build(tmp_path)


def _postponed(parts: Parts, batch_id: str) -> list[str]:
    return [e.detail or "" for e in parts.store.events(batch_id=batch_id, kind="batch.postponed")]


def _error_records(parts: Parts) -> dict[str, dict[str, Any]]:
    """source → the error object of each error record in the errors folder."""
    records = (json.loads(p.read_bytes()) for p in parts.cfg.errors.rglob("*.error.json"))
    return {r["source"]: r["error"] for r in records}


def _refusal() -> ProviderError:
    return ProviderError("http_400", "the provider answered HTTP 400: bad request (scripted)")


def test_a_batch_goes_from_batched_to_cleaned_recording_every_transition(parts: Parts) -> None:
    """One turn takes the batch through every step, each a recorded transition; accept is
    sent only once ACCEPTING is stored; each document is sent once; the signed files are
    in the outbox, the originals, the batch folder, the staged results and the remote
    batch gone, and the batch rests."""
    batch_id, ids = batched(parts, FILES)
    at_accept: list[BatchState] = []
    parts.provider.script["accept"] = [lambda: at_accept.append(parts.batch(batch_id).state)]

    assert drive(parts) == 1

    assert batch_events(parts.store, batch_id) == [
        ("BATCHED", "CREATED"), ("CREATED", "UPLOADED"), ("UPLOADED", "ACCEPTING"),
        ("ACCEPTING", "ACCEPTED"), ("ACCEPTED", "CLOSED"), ("CLOSED", "DOWNLOADED"),
        ("DOWNLOADED", "DELIVERED"), ("DELIVERED", "CLEANED")]
    assert at_accept == [BatchState.ACCEPTING]
    batch = parts.batch(batch_id)
    assert (batch.state, batch.remote_id, batch.attempts) == (BatchState.CLEANED, "r1", 0)
    assert batch.claimed_by is None and batch.next_attempt_at is None
    assert [c.step for c in parts.provider.calls] == [
        "prepare", "create", "status", "upload", "status", "accept", "status", "download",
        "delete"]
    assert sorted(parts.provider.sent_to("r1")) == ["0001_a.txt", "0002_b.txt"]
    for source, data in FILES.items():
        assert (parts.cfg.outbox / source).read_bytes() == SIGNED + data
        sidecar = json.loads((parts.cfg.outbox / f"{source}.json").read_bytes())
        assert (sidecar["source"], sidecar["status"]) == (source, "signed")
        states = [e.to_state for e in parts.store.events(file_id=ids[source])]
        assert states == ["CLAIMED", "BATCHED", "READY", "PUBLISHED", "DONE"]
    assert not parts.work.batch_dir(batch_id).exists()
    assert not (parts.state_dir / "downloads" / batch_id).exists()
    assert parts.provider.remotes == {}


def test_a_transient_error_postpones_the_batch_with_backoff_counting_attempts(
        parts: Parts) -> None:
    """Each transient failure releases the batch for the backoff of its attempt count,
    which the store keeps and each failure raises; it is not taken before its pause is
    over; the next transition starts the count afresh."""
    parts.backoff.seconds = lambda attempts: 10.0 * attempts
    parts.provider.script["status"] = [TransientError("HTTP 503 (scripted)"),
                                       TransientError("HTTP 503 again (scripted)")]
    batch_id, _ = batched(parts, FILES)
    start = parts.clock()

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts, batch.error_code) == (BatchState.CREATED, 1, "transient")
    assert batch.error_message == "HTTP 503 (scripted)"
    assert batch.next_attempt_at == start + 10 and batch.claimed_by is None
    assert not parts.machine.run_once()  # its pause is not over

    parts.clock.advance(10)
    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert batch.attempts == 2 and batch.next_attempt_at == start + 10 + 20
    assert parts.backoff.asked == [1, 2]
    assert _postponed(parts, batch_id) == ["transient: HTTP 503 (scripted)",
                                           "transient: HTTP 503 again (scripted)"]

    drive(parts)
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts, batch.error_code) == (BatchState.CLEANED, 0, None)
    assert parts.provider.called("upload") == ["r1"]
    assert parts.provider.called("accept") == ["r1"]


def test_the_pause_is_the_providers_retry_after_else_at_most_its_retry_max(
        tmp_path: Path) -> None:
    parts = build(tmp_path, Scripted(retry_max_seconds=30.0))
    parts.backoff.seconds = lambda attempts: 1000.0
    parts.provider.script["status"] = [TransientError("busy (scripted)", retry_after=7.0),
                                       TransientError("down (scripted)")]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    assert parts.batch(batch_id).next_attempt_at == parts.clock() + 7
    parts.clock.advance(7)
    assert parts.machine.run_once()
    assert parts.batch(batch_id).next_attempt_at == parts.clock() + 30


def test_a_spent_request_budget_waits_its_turn_without_an_attempt(parts: Parts) -> None:
    """Throttled is no failure: the batch is released for its retry_after, uncounted."""
    parts.provider.script["status"] = [Throttled("budget spent (scripted)", retry_after=5.0)]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts, batch.error_code) == (BatchState.CREATED, 0, None)
    assert batch.next_attempt_at == parts.clock() + 5 and batch.claimed_by is None
    assert _postponed(parts, batch_id) == []


def test_a_step_failing_unforeseen_waits_with_backoff_as_internal(parts: Parts) -> None:
    parts.provider.script["create"] = [RuntimeError("surprise (scripted)")]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts, batch.error_code) == (BatchState.BATCHED, 1, "internal")
    assert batch.error_message == "RuntimeError: surprise (scripted)"
    assert drive(parts) > 0 and parts.batch(batch_id).state == BatchState.CLEANED


def test_a_work_folder_that_cannot_be_reached_holds_the_batch_untouched(parts: Parts) -> None:
    """The inbox share is away (its marker cannot be read): no step runs, nothing is
    asked of the provider; the batch waits."""
    batch_id, _ = batched(parts, FILES)
    parts.work.marker.unlink()

    assert parts.machine.run_once()
    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts, batch.error_code) == (BatchState.BATCHED, 1, "transient")
    assert "cannot be reached" in (batch.error_message or "")
    assert parts.provider.calls == []


@pytest.mark.parametrize(("step", "script", "failed_step"), [
    ("create", [_refusal()], BatchState.BATCHED),
    ("upload", [_refusal()], BatchState.CREATED),
    ("status", [None, _refusal()], BatchState.UPLOADED),  # the accept step's status
])
def test_a_refusal_before_accepting_fails_the_batch_and_its_files_go_to_errors(
        parts: Parts, step: str, script: list[Outcome], failed_step: BatchState) -> None:
    """A permanent refusal before ACCEPTING: the batch fails with the provider's code and
    words (nothing was accepted: no "may have been"), each original goes to errors with
    its record, and the batch rests: nothing is sent again."""
    parts.provider.script[step] = script
    batch_id, ids = batched(parts, FILES)

    drive(parts)

    batch = parts.batch(batch_id)
    message = "the provider answered HTTP 400: bad request (scripted)"
    assert (batch.state, batch.failed_step) == (BatchState.FAILED, failed_step)
    assert (batch.error_code, batch.error_message) == ("http_400", message)
    assert batch.next_attempt_at is None
    assert parts.provider.called("accept") == []
    assert {r.state for r in parts.store.files_of_batch(batch_id)} == {FileState.FAILED}
    for source, data in FILES.items():
        assert (parts.cfg.errors / source).read_bytes() == data
    assert {s: (e["code"], e["message"]) for s, e in _error_records(parts).items()} == {
        source: ("http_400", message) for source in FILES}
    assert list(parts.cfg.outbox.iterdir()) == []
    calls = len(parts.provider.calls)
    assert not parts.machine.run_once() and len(parts.provider.calls) == calls


@pytest.mark.parametrize(("step", "script", "failed_step"), [
    ("accept", [_refusal()], BatchState.ACCEPTING),
    ("status", [None, None, _refusal()], BatchState.ACCEPTED),  # the first poll
    ("download", [_refusal()], BatchState.CLOSED),
])
def test_a_refusal_after_accepting_says_the_files_may_have_been_stored(
        tmp_path: Path, step: str, script: list[Outcome], failed_step: BatchState) -> None:
    """Once ACCEPTING was stored, whatever refuses, the provider may have run the batch:
    the batch and each error record say so, in the provider's outcome (Clevver's:
    stored), and that retry asks the same batch again; accept was sent once, and
    nothing is sent again."""
    parts = build(tmp_path, Scripted(steps=Steps(remote=True, outcome="stored")))
    parts.provider.script[step] = script
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    batch = parts.batch(batch_id)
    message = "the provider answered HTTP 400: bad request (scripted)" + MAY_HAVE_RUN
    assert (batch.state, batch.failed_step) == (BatchState.FAILED, failed_step)
    assert (batch.error_code, batch.error_message) == ("http_400", message)
    assert {s: (e["code"], e["message"]) for s, e in _error_records(parts).items()} == {
        source: ("http_400", message) for source in FILES}
    assert parts.provider.called("accept") == ["r1"]
    assert parts.provider.called("upload") == ["r1"] and parts.provider.called("create") == [""]
    calls = len(parts.provider.calls)
    assert not parts.machine.run_once() and len(parts.provider.calls) == calls


def test_a_refusal_after_accepting_is_no_doubt_where_accept_can_be_repeated(
        tmp_path: Path) -> None:
    """For a provider whose accept is no point of no return (the local signer) a refusal
    after ACCEPTING fails the files with the provider's own words only."""
    parts = build(tmp_path, Scripted(steps=Steps(remote=False, irrevocable=False)))
    parts.provider.script["accept"] = [_refusal()]
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    batch = parts.batch(batch_id)
    assert batch.state == BatchState.FAILED and batch.failed_step == BatchState.ACCEPTING
    assert batch.error_message == "the provider answered HTTP 400: bad request (scripted)"


def test_a_batch_that_never_closes_fails_after_max_wait_as_may_have_been_signed(
        tmp_path: Path) -> None:
    parts = build(tmp_path, Scripted(max_wait=10.0))
    parts.provider.running_polls = 1000
    batch_id, _ = batched(parts, FILES)

    drive(parts)

    batch = parts.batch(batch_id)
    assert (batch.state, batch.failed_step) == (BatchState.FAILED, BatchState.ACCEPTED)
    assert batch.error_code == "never_closed"
    assert "may have been signed: check with the provider" in (batch.error_message or "")
    accepted = next(at for to, at in parts.store.batch_transitions(batch_id) if to == "ACCEPTED")
    assert parts.clock() - accepted > 10.0


def test_a_started_batch_the_provider_lost_fails_as_may_have_been_signed(parts: Parts) -> None:
    """The provider no longer knows the started batch and can prove none of its results:
    the batch fails as lost_after_accept, never submitted again."""
    batch_id, _ = batched(parts, FILES)
    parts.provider.script["status"] = [None, None, lambda: parts.provider.remotes.clear()]

    drive(parts)

    batch = parts.batch(batch_id)
    assert (batch.state, batch.error_code) == (BatchState.FAILED, "lost_after_accept")
    assert "may have been signed" in (batch.error_message or "")
    assert parts.provider.called("salvage") == ["r1"]
    assert parts.provider.called("create") == [""] and parts.provider.called("accept") == ["r1"]


def test_a_file_the_provider_rejects_goes_to_errors_and_the_rest_is_delivered(
        parts: Parts) -> None:
    parts.provider.rejects = {"0001_a.txt": ("checksum_mismatch", "not what was sent")}
    batch_id, ids = batched(parts, FILES)

    drive(parts)

    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.provider.sent_to("r1") == ["0002_b.txt"]
    assert _error_records(parts)["a.txt"]["code"] == "checksum_mismatch"
    assert (parts.cfg.errors / "a.txt").read_bytes() == FILES["a.txt"]
    assert (parts.cfg.outbox / "sub/b.txt").read_bytes() == SIGNED + FILES["sub/b.txt"]
    assert [r.state for r in parts.store.files_of_batch(batch_id) if r.id == ids["a.txt"]] == [
        FileState.FAILED]


def _take_over(parts: Parts, taken: list[tuple[MemoryStore, BatchRecord]]) -> None:
    """Another node takes the batch over once this one's lease ran out."""
    parts.clock.advance(LEASE_SECONDS + 1)
    other = parts.store.connect("node-b")
    batch = other.acquire_batch()
    assert batch is not None
    taken.append((other, batch))


@pytest.mark.parametrize(("step", "stopped_in"), [
    ("status", BatchState.CREATED),   # before the upload: it is never sent by this thread
    ("accept", BatchState.ACCEPTING),  # accept went out; ACCEPTED is not stored by it
])
def test_a_lease_lost_mid_step_stops_touching_the_batch(
        parts: Parts, step: str, stopped_in: BatchState) -> None:
    """The step's next guarded write finds the lease gone: the turn ends there, without a
    transition, a postponement or a failure; the new holder goes on from the stored
    state and sends nothing twice (an accept in doubt is asked about first)."""
    taken: list[tuple[MemoryStore, BatchRecord]] = []
    parts.provider.script[step] = [lambda: _take_over(parts, taken)]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()

    batch = parts.batch(batch_id)
    assert batch.state == stopped_in and (batch.claimed_by or "").startswith("node-b/")
    assert (batch.attempts, batch.error_code) == (0, None)
    assert _postponed(parts, batch_id) == []
    assert parts.provider.called("upload") == ([] if step == "status" else ["r1"])
    [(other, held)] = taken
    parts.machine_on(other).advance(held)
    assert parts.batch(batch_id).state == BatchState.CLEANED
    assert parts.provider.called("upload") == ["r1"]
    assert parts.provider.called("accept") == ["r1"]


def test_a_lease_lost_while_a_failed_batchs_files_go_to_errors_ends_the_turn_only(
        parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider refused the create, and while the files were going to errors the
    batch was taken over (this node paused): the turn ends with lease.lost, nothing is
    raised out of it (a batch thread that raised would stop the daemon), and the node
    that holds the batch now puts the rest into errors."""
    taken: list[tuple[MemoryStore, BatchRecord]] = []
    parts.provider.script["create"] = [_refusal()]
    batch_id, _ = batched(parts, FILES)
    real_fail = parts.sink.fail

    def paused_before_the_first(record: Any, context: Any) -> None:
        if not taken:
            _take_over(parts, taken)
        real_fail(record, context)
    monkeypatch.setattr(parts.sink, "fail", paused_before_the_first)

    assert parts.machine.run_once()  # no LeaseLost out of the turn

    [(other, held)] = taken
    assert {r.state for r in other.files_of_batch(batch_id)} == {FileState.REJECTED}
    assert list(parts.cfg.errors.rglob("*.error.json")) == []
    monkeypatch.setattr(parts.sink, "fail", real_fail)
    parts.machine_on(other).advance(held)
    assert {r.state for r in other.files_of_batch(batch_id)} == {FileState.FAILED}
    assert sorted(_error_records(parts)) == sorted(FILES)


def test_a_stopping_daemon_releases_the_batch_between_steps(parts: Parts) -> None:
    """The stop event ends the turn after the step under way: the batch is released, due
    at once for the next daemon, and no further step runs."""
    parts.provider.script["create"] = [parts.stop.set]
    batch_id, _ = batched(parts, FILES)

    assert parts.machine.run_once()

    batch = parts.batch(batch_id)
    assert (batch.state, batch.attempts) == (BatchState.CREATED, 0)
    assert batch.claimed_by is None and batch.next_attempt_at == parts.clock()
    assert parts.provider.called("upload") == []
