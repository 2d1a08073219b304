"""The intake on a real inbox and store: files waiting until whole by content, suspected
fragments of writers that pause, and the ignored names a scan passes over."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.core import config, logs
from folderseal.intake.folder import FolderIntake
from folderseal.intake.inbox import MAX_DEPTH
from folderseal.store import Store
from folderseal.store.sqlite import SqliteStore
from tests.helpers import Layout, error_records, sha256
from tests.images import make_jpeg, make_tiff
from tests.intake_parts import folder_intake


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    yield stream
    logs.configure("json", "info", io.StringIO())


def _events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [e for e in found if e["event"] == name]


STARTED: list[FolderIntake] = []


@pytest.fixture(autouse=True)
def _stopped() -> Iterator[None]:
    """Each intake's probe threads end with its test."""
    yield
    while STARTED:
        STARTED.pop().stop()


def _intake(tmp_path: Path, **folder: Any) -> tuple[Layout, FolderIntake, Store]:
    layout = Layout(tmp_path, folder={"watch": "polling", "settle_seconds": 0.2,
                                      "poll_interval_seconds": 0.1, **folder})
    layout.write()
    settings = config.load(layout.config)
    store = SqliteStore.open(settings.state_dir, "node")
    intake = folder_intake(settings, store)
    assert intake.attach(time.time())
    STARTED.append(intake)
    return layout, intake, store


def _run(intake: FolderIntake, seconds: float, until: Any = None) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        intake.step(time.time(), [])
        if until is not None and until():
            return
        time.sleep(0.05)


def test_a_cut_jpeg_waits_and_the_whole_file_is_claimed(tmp_path: Path) -> None:
    """The first half of a JPEG, unchanged for many settle periods, is not claimed and
    waits with the reason; once the rest is appended the whole file is claimed."""
    layout, intake, store = _intake(tmp_path)
    photo = make_jpeg(scan_bytes=20_000)
    path = layout.inbox / "photo.jpg"
    path.write_bytes(photo[:len(photo) // 2])
    _run(intake, 1.5)
    assert store.file_ids("scans") == set()
    [waiting] = intake.notes(time.time())["waiting"]
    assert waiting["source"] == "photo.jpg"
    assert waiting["why"].startswith("the JPEG has no end marker: was it copied completely?")
    with path.open("ab") as out:
        out.write(photo[len(photo) // 2:])
    _run(intake, 5, until=lambda: store.file_ids("scans"))
    [claim_id] = store.file_ids("scans")
    record = store.file(claim_id)
    assert record is not None and record.size == len(photo)
    assert sha256(intake.work.path_of(record)) == hashlib.sha256(photo).hexdigest()
    store.close()


def test_a_file_never_whole_goes_to_errors_with_the_reason_and_what_to_do(
        tmp_path: Path) -> None:
    """A TIFF cut short that never becomes whole goes to errors after stuck_after_seconds;
    its record names the completeness reason and the next step."""
    layout, intake, store = _intake(tmp_path, stuck_after_seconds=1.0)
    tiff = make_tiff("<")
    (layout.inbox / "page.tif").write_bytes(tiff[:-40])
    _run(intake, 10, until=lambda: error_records(layout.errors))
    [record_path] = error_records(layout.errors)
    record = json.loads(record_path.read_text())
    assert record["error"]["code"] == "stuck"
    message = record["error"]["message"]
    assert "the TIFF is cut short: page 2's data lies past its end" in message
    assert "was it copied completely? If not, copy the whole file into the inbox again" \
        in message
    assert (layout.errors / "page.tif").read_bytes() == tiff[:-40]
    store.close()


def test_a_file_at_a_path_claimed_moments_ago_is_a_suspected_fragment(
        tmp_path: Path, log: io.StringIO) -> None:
    """A text file written again at a path claimed moments before is logged as
    file.fragment_suspected (naming the earlier claim, the path and settle_seconds) and
    recorded for status; a file at another path is not."""
    layout, intake, store = _intake(tmp_path)
    (layout.inbox / "slow.txt").write_text("part one\n")
    _run(intake, 5, until=lambda: store.file_ids("scans"))
    [first] = store.file_ids("scans")
    (layout.inbox / "slow.txt").write_text("part two\n")
    (layout.inbox / "other.txt").write_text("another file\n")
    _run(intake, 5, until=lambda: len(store.file_ids("scans")) == 3)
    [warning] = _events(log, "file.fragment_suspected")
    assert warning["level"] == "warning"
    assert warning["source"] == "slow.txt" and warning["earlier_claim"] == first
    assert warning["settle_seconds"] == 0.2
    reason = warning["reason"]
    assert "a writer paused longer than settle_seconds (0.2 s) between writes? Then its " \
           "parts are sealed separately, each into the outbox with its own sidecar" in reason
    assert "To have the whole file sealed, copy the complete file into the inbox again " \
           "once it is written" in reason
    assert "raise settle_seconds, or have the writer write under a temporary name and " \
           "rename when done" in reason
    [(kind, file_id)] = store._db.execute(  # noqa: SLF001 - the recorded event itself
        "SELECT kind, file_id FROM events WHERE kind = 'file.fragment_suspected'").fetchall()
    assert file_id == first
    store.close()


def test_recent_claims_survive_a_restart(tmp_path: Path, log: io.StringIO) -> None:
    """After a restart (a new intake on the same store) a file at a path claimed before
    the restart, within the window, is still a suspected fragment."""
    layout, intake, store = _intake(tmp_path)
    (layout.inbox / "slow.txt").write_text("part one\n")
    _run(intake, 5, until=lambda: store.file_ids("scans"))
    [first] = store.file_ids("scans")
    intake.stop()
    store.close()
    layout, restarted, store = _intake(tmp_path)
    (layout.inbox / "slow.txt").write_text("part two\n")
    _run(restarted, 5, until=lambda: len(store.file_ids("scans")) == 2)
    [warning] = _events(log, "file.fragment_suspected")
    assert warning["earlier_claim"] == first
    store.close()


def test_a_path_claimed_long_ago_is_no_fragment(tmp_path: Path, log: io.StringIO) -> None:
    """A file at a path claimed longer ago than the window (30 s at least) is no suspect."""
    layout, intake, store = _intake(tmp_path)
    intake.fragments.claimed("old.txt", "claim-from-long-ago", time.time() - 31)
    (layout.inbox / "old.txt").write_text("a new day's file\n")
    _run(intake, 5, until=lambda: store.file_ids("scans"))
    assert _events(log, "file.fragment_suspected") == []
    store.close()


def test_a_scan_counts_the_ignored_names_and_finds_the_oldest(tmp_path: Path) -> None:
    """Files the ignore list skips (built-in names, exclude patterns, in subfolders too)
    are counted with the oldest by mtime; files in hidden or system folders (such as
    .folderseal) and documents are not."""
    layout, intake, store = _intake(tmp_path, exclude=["*.bak"])
    inbox = layout.inbox
    old = time.time() - 3 * 86400
    for name in ("x.tmp", "y.PART", "~$doc.docx", ".hidden", "notes.bak", "sub/z.crdownload"):
        (inbox / name).parent.mkdir(exist_ok=True)
        (inbox / name).write_text("ignored")
    os.utime(inbox / "y.PART", (old, old))
    for name in (".cache/a.pdf", "@eaDir/thumb.jpg", ".folderseal/stray.tmp"):
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_text("not counted")
    (inbox / "letter.txt").write_text("a document")
    intake.scan(time.time())
    ignored = intake.notes(time.time())["ignored"]
    assert ignored["count"] == 6
    assert ignored["oldest"] == "y.PART" and ignored["oldest_mtime"] == pytest.approx(old)
    assert json.loads(json.dumps(ignored)) == ignored  # it travels in the heartbeat
    store.close()


def test_operating_system_files_are_not_counted_as_ignored(tmp_path: Path) -> None:
    """Thumbs.db, desktop.ini, .DS_Store and macOS's ._ files (in subfolders too) are
    passed over and not counted: "rename a forgotten one to have it sealed" is no advice
    for them, and they would be reported for ever; a temp name beside them is counted."""
    layout, intake, store = _intake(tmp_path)
    inbox = layout.inbox
    (inbox / "sub").mkdir()
    for name in ("Thumbs.db", "desktop.ini", ".DS_Store", "._letter.pdf", "sub/Thumbs.db",
                 "sub/.DS_Store", "sub/._scan.tif", "x.tmp"):
        (inbox / name).write_text("not a document")
    intake.scan(time.time())
    ignored = intake.notes(time.time())["ignored"]
    assert (ignored["count"], ignored["oldest"]) == (1, "x.tmp")
    store.close()


@pytest.mark.parametrize("watch", ["polling", "events"])
def test_a_folder_nested_a_thousand_levels_deep_is_skipped_with_a_warning(
        tmp_path: Path, log: io.StringIO, watch: str) -> None:
    """An inbox holding a folder nested 1,000 levels deep (which ended every scan, or the
    start of inotify, and so the daemon, with a RecursionError) is watched by polling and
    scanned: folders deeper than MAX_DEPTH are not listed, a warning names them once, and
    the other files are claimed."""
    layout, intake, store = _intake(tmp_path, watch=watch)
    intake.watcher.stop()  # the tree is there before the watch is set up, as at a start
    levels = [layout.inbox / "/".join(["d"] * n) for n in range(1, 1001)]
    for folder in levels:
        folder.mkdir()
    (levels[-1] / "lost.txt").write_text("too deep to be found")
    (levels[0] / "near.txt").write_text("one level down")
    try:
        assert intake.attach(time.time())
        assert intake.mode == "polling"
        _run(intake, 5, until=lambda: store.file_ids("scans"))
        _run(intake, 0.5)  # more scans: the warning is not repeated
        records = [store.file(i) for i in store.file_ids("scans")]
        assert [r.source_text for r in records if r] == ["d/near.txt"]
        [warning] = _events(log, "folder.too_deep")
        assert warning["folders"] == ["/".join(["d"] * (MAX_DEPTH + 1))], warning
        assert f"more than {MAX_DEPTH} folder levels" in warning["advice"]
    finally:
        for folder in reversed(levels):  # shutil.rmtree would recurse as deep
            for left in folder.iterdir():
                left.unlink()  # lost.txt, or near.txt if it was not claimed
            folder.rmdir()
        store.close()


def test_a_link_and_a_fifo_reach_an_errors_folder_on_another_filesystem(
        tmp_path: Path) -> None:
    """Rejected at claim (not regular files), a symbolic link and a FIFO are recorded in an
    errors folder on another filesystem (a tmpfs) by the folder's errors thread: the link
    moves there as a link; the FIFO, which cannot be copied, stays in the work folder and
    its record says where, instead of a move that failed (or waited) on every pass."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) for the errors folder")
    errors = shm / f"folderseal-test-errors-{os.getpid()}-{os.urandom(4).hex()}"
    errors.mkdir()
    try:
        layout, intake, store = _intake(tmp_path, errors=str(errors))
        (layout.inbox / "link.txt").symlink_to("/etc/hostname")
        os.mkfifo(layout.inbox / "pipe")
        _run(intake, 15, until=lambda: len(error_records(errors)) == 2)
        records = {p.name: json.loads(p.read_text()) for p in error_records(errors)}
        assert set(records) == {"link.txt.error.json", "pipe.error.json"}, records
        assert os.readlink(errors / "link.txt") == "/etc/hostname"
        assert not os.path.lexists(errors / "pipe")
        message = records["pipe.error.json"]["error"]["message"]
        assert "not a regular file, so it cannot be copied" in message, message
        kept = next(intake.work.path.rglob("pipe"))
        assert str(kept) in message and stat.S_ISFIFO(os.lstat(kept).st_mode)
        store.close()
    finally:
        shutil.rmtree(errors, ignore_errors=True)


def test_a_provider_caps_the_folders_batch_size(tmp_path: Path) -> None:
    """A provider's max_batch_files below the folder's batch_max_files makes the batches."""
    layout = Layout(tmp_path, folder={"watch": "polling", "batch_max_files": 10})
    layout.write()
    settings = config.load(layout.config)
    store = SqliteStore.open(settings.state_dir, "node")
    intake = folder_intake(settings, store, max_batch_files=2)
    assert intake.attach(time.time())
    STARTED.append(intake)
    for name in ("a.txt", "b.txt", "c.txt"):
        (layout.inbox / name).write_text(name)
        assert intake.claim_now(name)[0]
    batches = intake.form_batches(float("inf"))
    assert sorted(len(store.files_of_batch(b)) for b in batches) == [1, 2]
