"""Tests for folderseal.intake.folder.FolderIntake, the per-folder driver: real files in
tmp_path, a real SQLite store, the folder's real probe, and a recorded reject callback.

The driver is stepped with explicit times (``T`` onwards), so that settling and batch
timing are decided by the test, not by how fast it runs; only the probe's first look at
the output folders is waited for (it runs on its own thread).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.core import config
from folderseal.core.model import FileState
from folderseal.intake import folder
from folderseal.intake.claim import NOT_REGULAR
from folderseal.intake.folder import FolderIntake
from folderseal.store import Store
from folderseal.store.memory import MemoryStore
from tests.helpers import Layout, wait_until
from tests.images import make_jpeg
from tests.intake_parts import Rejected, folder_intake

SETTLE = 1.0
MAX_WAIT = 10.0


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Any]:
    """Builds a folder's intake (folder settings as keywords); stops what it built."""
    made: list[tuple[FolderIntake, Store]] = []

    def build(**folder: Any) -> tuple[Layout, FolderIntake, Store, Rejected]:
        layout = Layout(tmp_path, folder={"watch": "polling", "settle_seconds": SETTLE,
                                          "poll_interval_seconds": 0.5,
                                          "batch_max_wait_seconds": MAX_WAIT, **folder})
        layout.write()
        settings = config.load(layout.config)
        store = MemoryStore("node", state_dir=settings.state_dir)
        rejected = Rejected()
        intake = folder_intake(settings, store, reject=rejected)
        made.append((intake, store))
        return layout, intake, store, rejected

    yield build
    for intake, store in made:
        intake.stop()
        store.close()


def _started(intake: FolderIntake) -> float:
    """Attach, and wait for the probe's first look at the output folders; the time."""
    now = time.time()
    assert intake.attach(now)
    intake.probe.start()
    wait_until(lambda: intake.probe.outputs() is not None, 10, "the probe's first look")
    return now


def _claimed(store: Store) -> list[str]:
    return sorted(r.source_text for r in store.files_in_state("scans", FileState.CLAIMED))


def _taken(store: Store) -> list[str]:
    """The paths of every file the store has (claimed, batched or rejected)."""
    records = [store.file(i) for i in store.file_ids("scans")]
    return sorted(r.source_text for r in records if r is not None)


def test_a_dropped_file_is_claimed_once_settled_and_batched_when_due(built: Any) -> None:
    """A file is claimed at the first step at which two looks SETTLE apart agree (not
    before), and goes into a batch once its batch waited batch_max_wait_seconds."""
    layout, intake, store, rejected = built()
    (layout.inbox / "scan.txt").write_text("a scanned page\n")
    t = _started(intake)
    intake.step(t, [])
    assert _claimed(store) == []
    [waiting] = intake.notes(t)["waiting"]
    assert (waiting["source"], waiting["why"]) == ("scan.txt", "settling")
    intake.step(t + SETTLE / 2, [])
    assert _claimed(store) == []
    intake.step(t + SETTLE, [])
    assert _claimed(store) == ["scan.txt"]
    assert not (layout.inbox / "scan.txt").exists()
    [record] = store.files_in_state("scans", FileState.CLAIMED)
    assert intake.form_batches(record.claimed_at + MAX_WAIT - 1) == []
    assert intake.next_wakeup() <= record.claimed_at + MAX_WAIT
    [batch] = intake.form_batches(record.claimed_at + MAX_WAIT)
    [batched] = store.files_of_batch(batch)
    assert batched.id == record.id and batched.entry == "0001_scan.txt"
    assert (intake.work.batch_dir(batch) / "0001_scan.txt").read_text() == "a scanned page\n"
    assert rejected == []


def test_a_watch_hint_makes_a_candidate_without_a_scan(built: Any) -> None:
    """A hinted path is looked at without waiting for the next scan; a hint outside the
    inbox, or for an ignored name, is passed over."""
    layout, intake, store, _ = built()
    t = _started(intake)
    intake.step(t, [])  # the first scan: an empty inbox
    (layout.inbox / "hinted.txt").write_text("hinted")
    (layout.inbox / "x.tmp").write_text("ignored")
    hints: list[str | None] = [str(layout.inbox / "hinted.txt"), str(layout.inbox / "x.tmp"),
                               str(layout.root / "elsewhere.txt")]
    intake.step(t + 0.1, hints)
    assert [w["source"] for w in intake.notes(t)["waiting"]] == ["hinted.txt"]
    intake.step(t + 0.1 + SETTLE, [])
    assert _claimed(store) == ["hinted.txt"]


def test_a_link_is_rejected_through_the_callback(built: Any) -> None:
    """A symbolic link in the inbox is claimed at once as not a regular file: recorded
    REJECTED and handed to the reject callback with that reason."""
    layout, intake, store, rejected = built()
    (layout.inbox / "link.txt").symlink_to("/etc/hostname")
    t = _started(intake)
    intake.step(t, [])
    [(claim_id, failure)] = rejected
    assert failure == NOT_REGULAR
    record = store.file(claim_id)
    assert record is not None and record.state in (FileState.REJECTED, FileState.FAILED)
    assert record.error_code == "not_regular"


def test_a_file_not_whole_waits_with_the_reason(built: Any) -> None:
    """A settled JPEG without its end marker is not claimed; it waits, and says why."""
    layout, intake, store, _ = built()
    photo = make_jpeg(scan_bytes=5_000)
    (layout.inbox / "photo.jpg").write_bytes(photo[:len(photo) // 2])
    t = _started(intake)
    intake.step(t, [])
    intake.step(t + SETTLE, [])
    assert _claimed(store) == []
    [waiting] = intake.notes(t + SETTLE)["waiting"]
    assert waiting["why"].startswith("the JPEG has no end marker")


def test_a_missing_output_folder_holds_every_claim_back(built: Any) -> None:
    """While the errors folder is missing nothing is claimed, not even a link bound for
    errors: files wait with the reason, and the folder notes say it is blocked."""
    layout, intake, store, rejected = built()
    shutil.rmtree(layout.errors)
    (layout.inbox / "scan.txt").write_text("waits")
    (layout.inbox / "link.txt").symlink_to("/etc/hostname")
    t = _started(intake)
    for step in range(3):
        intake.step(t + step * SETTLE, [])
    assert store.file_ids("scans") == set() and rejected == []
    notes = intake.notes(t)
    assert [b["reason"] for b in notes["blocked"]] == ["errors_missing"]
    assert {w["why"] for w in notes["waiting"]} == {notes["blocked"][0]["message"]}


def test_files_in_flight_hold_ready_files_back_never_stuck(built: Any) -> None:
    """At max_in_flight_files a ready file waits with the reason; it is never stuck,
    however long it waits."""
    layout, intake, store, rejected = built(max_in_flight_files=1, stuck_after_seconds=5)
    (layout.inbox / "a.txt").write_text("first")
    t = _started(intake)
    intake.step(t, [])
    intake.step(t + SETTLE, [])
    assert _claimed(store) == ["a.txt"]
    (layout.inbox / "b.txt").write_text("second")
    for step in range(2, 30):
        intake.step(t + step * SETTLE, [])
    assert _taken(store) == ["a.txt"] and rejected == []
    [waiting] = intake.notes(t)["waiting"]
    assert waiting["source"] == "b.txt"
    assert "files are in flight (max_in_flight_files)" in waiting["why"]
    assert "files are in flight" in intake.notes(t)["paused"]


def test_a_backlog_waiting_for_room_is_not_looked_at_again_and_again(
        built: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no room (max_in_flight_files reached) no file of the inbox is stat'ed at each
    step: a backlog of thousands waits without costing a look a second each, and the
    folder does not wake for their looks. Its files wait with the reason all the same;
    and with room the backlog is looked at LOOKS_PER_STEP files a step."""
    layout, intake, store, rejected = built(max_in_flight_files=1)
    (layout.inbox / "a.txt").write_text("first")
    t = _started(intake)
    intake.step(t, [])
    intake.step(t + SETTLE, [])
    assert _claimed(store) == ["a.txt"]
    for i in range(50):
        (layout.inbox / f"wait-{i:02d}.txt").write_text("waits for room")
    intake.scan(t + SETTLE)
    looks: list[str] = []
    real_look = folder.look_at
    monkeypatch.setattr(folder, "look_at", lambda path, network: looks.append(path.name)
                        or real_look(path, network))
    for step in range(2, 12):
        intake.step(t + step * SETTLE, [])
    assert looks == [] and _taken(store) == ["a.txt"]
    assert intake.next_wakeup() > t + 11 * SETTLE  # no look is due while held back
    notes = intake.notes(t + 11 * SETTLE)
    assert notes["candidates"] == 50 and len(notes["waiting"]) == 20
    assert all("files are in flight (max_in_flight_files)" in w["why"]
               for w in notes["waiting"])
    monkeypatch.setattr(folder, "LOOKS_PER_STEP", 7)
    monkeypatch.setattr(intake.limits, "room", lambda: 100)
    intake.step(t + 12 * SETTLE, [])
    assert len(looks) == 7


def test_a_file_that_never_settles_is_rejected_as_stuck(built: Any) -> None:
    """A file that keeps changing is claimed as stuck after stuck_after_seconds and handed
    to the reject callback with what it waited for."""
    layout, intake, store, rejected = built(stuck_after_seconds=3)
    path = layout.inbox / "growing.txt"
    t = _started(intake)
    for step in range(8):
        with path.open("a") as out:
            out.write(f"line {step}\n")
        intake.step(t + step * SETTLE, [])
        if rejected:
            break
    [(claim_id, (code, message))] = rejected
    assert code == "stuck"
    assert message == "it never became ready within 3 s: it kept changing"
    record = store.file(claim_id)
    assert record is not None and record.source_text == "growing.txt"


def test_an_inbox_that_goes_away_is_an_outage_waited_out(built: Any) -> None:
    """An inbox that vanishes detaches the folder at its next scan (the notes say why)
    with a backoff; once it is back the folder attaches again and claims what waited
    there."""
    layout, intake, store, _ = built()
    t = _started(intake)
    intake.step(t, [])
    away = layout.root / "away"
    layout.inbox.rename(away)
    intake.step(t + 1, [])
    notes = intake.notes(t + 1)
    assert notes["attached"] is False and str(layout.inbox) in notes["outage"]
    assert intake.next_wakeup() == t + 2  # one second of backoff, the first time
    assert intake.health(t + 1) == ""     # waiting out an outage is no stall
    (away / "scan.txt").write_text("dropped while away")
    away.rename(layout.inbox)
    intake.step(t + 1.5, [])  # within the backoff: still detached
    assert intake.notes(t + 1.5)["attached"] is False
    intake.step(t + 2, [])
    assert intake.notes(t + 2)["attached"] is True
    intake.step(t + 2 + SETTLE, [])
    assert _claimed(store) == ["scan.txt"]


def test_a_claim_left_by_a_crash_is_registered_at_the_next_scan(built: Any) -> None:
    """A file renamed into the work folder and never recorded (a crash in between) is
    registered at the next scan and batched like any claim."""
    layout, intake, store, _ = built()
    t = _started(intake)
    left = intake.work.claim_dir("0000000000aa-left")
    left.mkdir(parents=True)
    (left / "page.txt").write_text("claimed before the crash")
    intake.step(t, [])
    assert _claimed(store) == ["page.txt"]
    assert len(intake.form_batches(float("inf"))) == 1


def test_duplicates_skip_rejects_content_already_delivered(built: Any) -> None:
    """With duplicates = "skip", a file whose content was delivered before is rejected
    as a duplicate when batches form, naming the earlier file; another file is batched."""
    layout, intake, store, rejected = built(duplicates="skip")
    for name in ("first.txt", "again.txt", "other.txt"):
        (layout.inbox / name).write_text("other" if name == "other.txt" else "same content")
    _started(intake)
    first, _ = intake.claim_now("first.txt")
    assert first is not None
    store.set_file_state(first, FileState.CLAIMED, FileState.DONE)  # delivered before
    again, _ = intake.claim_now("again.txt")
    other, _ = intake.claim_now("other.txt")
    [batch] = intake.form_batches(float("inf"))
    assert [r.id for r in store.files_of_batch(batch)] == [other]
    [(claim_id, (code, message))] = rejected
    assert (claim_id, code) == (again, "duplicate")
    assert "already delivered from 'first.txt'" in message


def test_claim_now_takes_a_named_file_at_once_or_says_why_not(built: Any) -> None:
    """claim_now claims a whole file without settling; a file not whole, or not there,
    is not claimed, and the reason says why."""
    layout, intake, store, _ = built()
    (layout.inbox / "now.txt").write_text("at once")
    photo = make_jpeg(scan_bytes=5_000)
    (layout.inbox / "cut.jpg").write_bytes(photo[:len(photo) // 2])
    _started(intake)
    claim_id, reason = intake.claim_now("now.txt")
    assert claim_id is not None and reason == ""
    assert _claimed(store) == ["now.txt"]
    assert intake.claim_now("cut.jpg")[1].startswith("the JPEG has no end marker")
    assert intake.claim_now("nowhere.txt") == (None, "no such file in the inbox")
    assert intake.tracker.waiting() == []
