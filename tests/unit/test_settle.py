"""Tests for folderseal.intake.settle.SettleTracker, driven with explicit clock values."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from folderseal.core import logs
from folderseal.intake import complete
from folderseal.intake.settle import Candidate, Look, SettleTracker

SETTLE = 5.0
STUCK = 100.0


def look(size: int = 10, mtime_ns: int = 1_000, ino: int = 7, dev: int = 1) -> Look:
    return Look(dev=dev, ino=ino, size=size, mtime_ns=mtime_ns, regular=True)


def candidates(settle: SettleTracker) -> dict[str, Candidate]:
    """The tracker's own bookkeeping, which these tests of it read."""
    return settle._candidates  # noqa: SLF001 - the state under test


def tracker(source: str = "scan.pdf", now: float = 0.0) -> SettleTracker:
    settle = SettleTracker(SETTLE, STUCK)
    settle.hint(source, now)
    return settle


def test_hint_makes_a_candidate_due_at_once() -> None:
    """A hinted path is due for a look right away."""
    settle = tracker(now=10.0)
    assert settle.due(10.0) == ["scan.pdf"]
    assert settle.next_look() == 10.0


def test_first_look_is_never_ready() -> None:
    """One look proves nothing: the file may still grow."""
    settle = tracker()
    assert settle.looked("scan.pdf", look(), 0.0) is False
    assert settle.due(0.0) == []
    assert settle.due(SETTLE) == ["scan.pdf"]


def test_ready_after_two_equal_looks_settle_seconds_apart() -> None:
    """Two equal looks SETTLE seconds apart make the file ready."""
    settle = tracker()
    assert settle.looked("scan.pdf", look(), 0.0) is False
    assert settle.looked("scan.pdf", look(), SETTLE) is True


def test_equal_looks_too_close_together_are_not_ready() -> None:
    """Two equal looks less than SETTLE apart are not enough; the next look is at the mark."""
    settle = tracker()
    settle.looked("scan.pdf", look(), 0.0)
    assert settle.looked("scan.pdf", look(), 1.0) is False
    assert settle.looked("scan.pdf", look(), SETTLE - 0.001) is False
    assert settle.next_look() == SETTLE
    assert settle.looked("scan.pdf", look(), SETTLE) is True


def test_size_change_restarts_the_wait() -> None:
    """A file that grew must stay the same for another full SETTLE seconds."""
    settle = tracker()
    settle.looked("scan.pdf", look(size=10), 0.0)
    assert settle.looked("scan.pdf", look(size=20), 4.0) is False
    assert settle.next_look() == 4.0 + SETTLE
    assert settle.looked("scan.pdf", look(size=20), 8.0) is False
    assert settle.looked("scan.pdf", look(size=20), 9.0) is True


def test_mtime_change_restarts_the_wait() -> None:
    """A rewrite with the same size but a new mtime restarts the wait."""
    settle = tracker()
    settle.looked("scan.pdf", look(mtime_ns=1), 0.0)
    assert settle.looked("scan.pdf", look(mtime_ns=2), SETTLE) is False
    assert settle.looked("scan.pdf", look(mtime_ns=2), 2 * SETTLE) is True


def test_inode_change_restarts_the_wait() -> None:
    """A file replaced under the same name (new inode) restarts the wait."""
    settle = tracker()
    settle.looked("scan.pdf", look(ino=1), 0.0)
    assert settle.looked("scan.pdf", look(ino=2), SETTLE) is False
    assert settle.looked("scan.pdf", look(ino=2), 2 * SETTLE) is True


def test_device_change_restarts_the_wait() -> None:
    """A share that was remounted (new device) restarts the wait."""
    settle = tracker()
    settle.looked("scan.pdf", look(dev=1), 0.0)
    assert settle.looked("scan.pdf", look(dev=2), SETTLE) is False


def test_vanished_file_is_forgotten() -> None:
    """A file gone before it settled is dropped from the candidates (it is not ours)."""
    settle = tracker()
    settle.looked("scan.pdf", look(), 0.0)
    assert settle.looked("scan.pdf", None, SETTLE) is False
    assert candidates(settle) == {}
    assert settle.next_look() is None
    assert settle.looked("scan.pdf", look(), 2 * SETTLE) is False  # unknown now


def test_look_at_an_unknown_source_is_not_ready() -> None:
    """A look for a path that was never hinted is ignored."""
    settle = SettleTracker(SETTLE, STUCK)
    assert settle.looked("other.pdf", look(), 0.0) is False
    assert candidates(settle) == {}


def test_hint_again_keeps_the_first_seen_time() -> None:
    """A second hint does not restart the stuck clock or the settle wait."""
    settle = tracker(now=0.0)
    settle.looked("scan.pdf", look(), 0.0)
    settle.hint("scan.pdf", 3.0)
    assert candidates(settle)["scan.pdf"].first_seen == 0.0
    assert settle.looked("scan.pdf", look(), SETTLE) is True


def test_wait_postpones_and_records_the_reason() -> None:
    """wait() records why a stable file is not ready and schedules another look."""
    settle = tracker()
    settle.looked("scan.pdf", look(), 0.0)
    assert settle.looked("scan.pdf", look(), SETTLE) is True
    settle.wait("scan.pdf", "no %%EOF yet", SETTLE)
    candidate = candidates(settle)["scan.pdf"]
    assert candidate.waiting_for == "no %%EOF yet"
    assert settle.due(SETTLE) == []
    assert settle.next_look() == 2 * SETTLE
    assert settle.due(2 * SETTLE) == ["scan.pdf"]


def test_wait_is_at_least_one_second() -> None:
    """With settle_seconds = 0 a waiting file is looked at again after 1 s, not in a spin."""
    settle = SettleTracker(0.0, STUCK)
    settle.hint("scan.pdf", 0.0)
    settle.wait("scan.pdf", "in use", 10.0)
    assert settle.next_look() == 11.0


def test_change_clears_the_waiting_reason() -> None:
    """A file that changes again is waiting for settling, not for the old reason."""
    settle = tracker()
    settle.looked("scan.pdf", look(size=1), 0.0)
    settle.wait("scan.pdf", "locked", 1.0)
    settle.looked("scan.pdf", look(size=2), 6.0)
    assert candidates(settle)["scan.pdf"].waiting_for == ""


def test_wait_on_an_unknown_source_does_nothing() -> None:
    """wait() for a path that is not a candidate adds nothing."""
    settle = SettleTracker(SETTLE, STUCK)
    settle.wait("gone.pdf", "locked", 0.0)
    assert candidates(settle) == {}


def test_stuck_after_stuck_after_seconds() -> None:
    """A candidate that never settles is reported stuck STUCK seconds after it was first seen."""
    settle = tracker(now=0.0)
    for t in range(0, 100, 5):
        settle.looked("scan.pdf", look(size=t), float(t))
    assert settle.stuck(STUCK - 0.1) == []
    stuck = settle.stuck(STUCK)
    assert [c.source for c in stuck] == ["scan.pdf"]


def test_forget_removes_a_candidate() -> None:
    """forget() drops a candidate (after it was claimed)."""
    settle = tracker()
    settle.forget("scan.pdf")
    settle.forget("never-seen.pdf")
    assert candidates(settle) == {}


def test_next_look_is_the_earliest_of_all_candidates() -> None:
    """next_look() is the soonest time any candidate wants a look; None when there are none."""
    settle = SettleTracker(SETTLE, STUCK)
    assert settle.next_look() is None
    settle.hint("a.pdf", 0.0)
    settle.hint("b.pdf", 1.0)
    settle.looked("a.pdf", look(), 0.0)       # next at 5
    settle.looked("b.pdf", look(), 1.0)       # next at 6
    assert settle.next_look() == 5.0
    assert settle.due(5.0) == ["a.pdf"]
    assert sorted(settle.due(6.0)) == ["a.pdf", "b.pdf"]


def test_waiting_lists_candidates_oldest_first() -> None:
    """waiting() lists candidates in the order they were first seen."""
    settle = SettleTracker(SETTLE, STUCK)
    settle.hint("late.pdf", 9.0)
    settle.hint("early.pdf", 1.0)
    assert [c.source for c in settle.waiting()] == ["early.pdf", "late.pdf"]


def test_a_file_held_back_for_room_is_never_stuck() -> None:
    """A ready file waiting only for room to be claimed does not count as stuck."""
    tracker = SettleTracker(settle_seconds=1.0, stuck_after_seconds=10.0)
    tracker.hint("held.pdf", 0.0)
    tracker.looked("held.pdf", Look(1, 2, 3, 4, True), 0.0)
    assert tracker.looked("held.pdf", Look(1, 2, 3, 4, True), 1.0)
    tracker.wait("held.pdf", "no room", 1.0, held=True)
    assert tracker.stuck(100.0) == []
    tracker.looked("held.pdf", Look(1, 2, 3, 5, True), 100.0)  # it changed: not held now
    tracker.looked("held.pdf", Look(1, 2, 3, 6, True), 101.0)  # and again, on time
    assert [c.source for c in tracker.stuck(101.0)] == ["held.pdf"]


def test_stuck_counts_from_the_first_look_and_only_for_files_just_looked_at() -> None:
    """Time a busy daemon spent before looking at a file, or while it looked at others,
    is not held against that file: stuck needs STUCK seconds of looks that found it not
    ready, and a look in this very step."""
    settle = SettleTracker(SETTLE, STUCK)
    settle.hint("scan.pdf", 0.0)
    assert settle.stuck(STUCK * 3) == [], "never looked at: not stuck"
    settle.looked("scan.pdf", look(size=1), STUCK * 3)
    assert settle.stuck(STUCK * 3 + 1) == []
    settle.looked("scan.pdf", look(size=2), STUCK * 4)
    settle.looked("scan.pdf", look(size=3), STUCK * 4 + SETTLE)
    now = STUCK * 4 + SETTLE
    assert settle.stuck(now, looked={"other.pdf"}) == []
    assert [c.source for c in settle.stuck(now, looked={"scan.pdf"})] == ["scan.pdf"]


def test_a_late_look_that_finds_a_change_is_not_yet_stuck() -> None:
    """When the daemon looked late (it was busy), a change it finds does not make the
    file stuck; the next look on time does, if the file still changes."""
    settle = SettleTracker(SETTLE, STUCK)
    settle.hint("scan.pdf", 0.0)
    settle.looked("scan.pdf", look(size=1), 0.0)
    settle.looked("scan.pdf", look(size=2), STUCK + 1)       # long after: late
    assert settle.stuck(STUCK + 1, looked={"scan.pdf"}) == []
    settle.looked("scan.pdf", look(size=3), STUCK + 1 + SETTLE)
    assert [c.source for c in settle.stuck(STUCK + 1 + SETTLE, looked={"scan.pdf"})] == [
        "scan.pdf"]


def test_a_content_check_that_raises_counts_as_cannot_tell_and_is_logged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should bytes make the content check raise (struct.error, OverflowError,
    ValueError), the file is not ready-blocked and nothing escapes: it counts as complete
    (the signer decides), and the warning is logged once however often it is looked at."""
    path = tmp_path / "odd.tif"
    path.write_bytes(b"II*\0" + bytes(20))
    stream = io.StringIO()
    logs.configure("json", "info", stream)

    def raising(fd: int, size: int, name: str = "") -> str:
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(complete, "why_incomplete", raising)
    try:
        settle = SettleTracker(SETTLE, STUCK, "scans")
        settle.hint("odd.tif", 0.0)
        for now in (0.0, SETTLE, 2 * SETTLE):
            assert settle.not_ready("odd.tif", path, look(size=24), now) == ""
    finally:
        logs.configure("json", "info", io.StringIO())
    warnings = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(w["event"], w["source"], w["folder"]) for w in warnings] == [
        ("file.content_check_failed", "odd.tif", "scans")]
    assert "4 bytes" in warnings[0]["error"]


def test_due_gives_the_soonest_first_up_to_a_limit_and_keeps_them_due() -> None:
    """A backlog is handed out a limited number at a time, soonest first; files not yet
    looked at stay due, and a file given a later time (a look, a wait) is due only then,
    however often it was rescheduled."""
    settle = SettleTracker(SETTLE, STUCK)
    for i in range(5000):
        settle.hint(f"f{i:04d}.pdf", i / 1000)
    assert settle.due(10.0, 3) == ["f0000.pdf", "f0001.pdf", "f0002.pdf"]
    assert settle.due(10.0, 3) == ["f0000.pdf", "f0001.pdf", "f0002.pdf"]  # still due
    for _ in range(20):  # rescheduled again and again: one current time counts
        settle.wait("f0000.pdf", "not whole yet", 10.0)
    assert settle.due(10.0, 2) == ["f0001.pdf", "f0002.pdf"]
    settle.forget("f0001.pdf")
    assert settle.due(10.0, 2) == ["f0002.pdf", "f0003.pdf"]
    assert len(settle.due(10.0)) == 4998 and settle.count() == 4999
    assert settle.next_look() == 0.002
    assert "f0000.pdf" in settle.due(10.0 + max(SETTLE, 1.0))
    assert [c.source for c in settle.waiting(2)] == ["f0000.pdf", "f0002.pdf"]
