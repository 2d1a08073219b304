"""The errors folder reconciled with the store, in process: real store, real folders.

A failure whose original left the errors folder becomes CLEARED; an errors folder that
is not the one the failure went to (an empty mount point where a share should be,
another folder configured) proves nothing gone and clears nothing; a file is known by
its content, whatever device and inode numbers a remount gives it, and read only when
its size or mtime changed, a bounded amount a pass; the folder's marker is never
followed as a link, and a marker lost is made again from the files found there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from folderseal.commands.retry import retry
from folderseal.core import config, files
from folderseal.core.model import FileState
from folderseal.publish import errorfiles
from folderseal.service.daemon import Daemon
from folderseal.service.status import collect
from tests.helpers import Layout, wait_until


def _failed_in_errors(layout: Layout, daemon: Daemon, name: str = "fake.pdf") -> str:
    """A file taken and failed (not a PDF) by the daemon's own steps; its file id."""
    (layout.inbox / name).write_bytes(f"not a pdf at all: {name}\n%%EOF\n".encode())
    intake = daemon.intakes["scans"]
    claim_id, reason = intake.claim_now(name)
    assert claim_id is not None, reason
    assert intake.form_batches(float("inf"))
    store = daemon.store
    assert store is not None
    daemon.drain(lambda: store.file(claim_id).state == FileState.FAILED, timeout=60)
    assert (layout.errors / name).exists()
    return claim_id


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes of each file read whole to tell it by its content."""
    counted: list[int] = []
    real = files.hash_fd

    def hash_fd(fd: int) -> tuple[str, int]:
        digest, size = real(fd)
        counted.append(size)
        return digest, size

    monkeypatch.setattr(files, "hash_fd", hash_fd)
    return counted


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=0)
    daemon.prepare()
    yield daemon
    daemon.close()


def _reconcile(daemon: Daemon) -> None:
    daemon.sinks["scans"].failures.reconcile()


def _state(daemon: Daemon, file_id: str) -> FileState:
    assert daemon.store is not None
    record = daemon.store.file(file_id)
    assert record is not None
    return record.state


def _place(daemon: Daemon, file_id: str) -> dict[str, Any]:
    assert daemon.store is not None
    record = daemon.store.file(file_id)
    assert record is not None
    return next(o for o in record.outputs if o["role"] == "error")


def _unseen(daemon: Daemon) -> list[str]:
    """The "cannot be seen" alarms of status, as a running daemon reports them: its errors
    thread finds them, its heartbeat carries them."""
    assert daemon.store is not None
    daemon.intakes["scans"].probe.find_unseen(daemon.store)
    daemon.loops["scans"].take_notes(time.time())  # as the folder's thread does
    daemon.keep_notes(time.time())  # the folders' notes, which the beat sends
    daemon.heartbeat()
    return [a for a in collect(daemon.settings, warnings=[])["alarms"] if "cannot be" in a]


def test_an_errors_folder_on_another_filesystem_clears_nothing(tmp_path: Path) -> None:
    """With another filesystem mounted over the errors folder (as an empty mount point
    shows while its share is away) nothing is marked CLEARED; once the file is really
    gone from the errors folder, it is."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs: needs root (CI runs as root)")
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=0)
    daemon.prepare()
    try:
        assert daemon.store is not None
        file_id = _failed_in_errors(layout, daemon)
        failures = daemon.sinks["scans"].failures
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(layout.errors)], check=True)
        try:
            assert not (layout.errors / "fake.pdf").exists()
            failures.reconcile()
            assert daemon.store.file(file_id).state == FileState.FAILED
        finally:
            subprocess.run(["umount", str(layout.errors)], check=True)
        failures.reconcile()
        assert daemon.store.file(file_id).state == FileState.FAILED
        (layout.errors / "fake.pdf").unlink()
        failures.reconcile()
        assert daemon.store.file(file_id).state == FileState.CLEARED
    finally:
        daemon.close()


def _rewrite_place(daemon: Daemon, file_id: str, **changes: int) -> None:
    """Change the recorded place of a failure's original, as a remount (another device
    number) or a filesystem without stable inode numbers would make it differ."""
    assert daemon.store is not None
    record = daemon.store.file(file_id)
    assert record is not None
    outputs = [{**o, **{k: o[k] + v for k, v in changes.items()}} if o["role"] == "error"
               else o for o in record.outputs]
    with daemon.store.transaction():
        daemon.store._db.execute("UPDATE files SET outputs = ? WHERE id = ?",  # noqa: SLF001
                                 (json.dumps(outputs), file_id))


@pytest.mark.parametrize("changes", [{"dev": 7}, {"ino": 1}, {"dev": 7, "ino": 1}],
                         ids=["remount", "unstable-inodes", "both"])
def test_a_failure_whose_device_or_inode_number_changed_stays_and_retries(
        tmp_path: Path, changes: dict[str, int], reads: list[int]) -> None:
    """After a remount (another device number) or on a filesystem whose inode numbers are
    not stable, the file still in errors with its size and mtime is the failure's:
    reconcile clears nothing and records the new numbers without reading it, and retry
    puts it back into the inbox."""
    layout = Layout(tmp_path)
    layout.write()
    settings = config.load(layout.config)
    daemon = Daemon(settings, batch_threads=0)
    daemon.prepare()
    try:
        assert daemon.store is not None
        file_id = _failed_in_errors(layout, daemon)
        _rewrite_place(daemon, file_id, **changes)
        reads.clear()
        daemon.sinks["scans"].failures.reconcile()
        assert reads == []
        record = daemon.store.file(file_id)
        assert record is not None and record.state == FileState.FAILED
        st = os.lstat(layout.errors / "fake.pdf")
        place = next(o for o in record.outputs if o["role"] == "error")
        assert (place["dev"], place["ino"]) == (st.st_dev, st.st_ino)  # brought up to date
        _rewrite_place(daemon, file_id, **changes)
    finally:
        daemon.close()
    assert retry(settings, [file_id]) == 0
    assert (layout.inbox / "fake.pdf").read_bytes().startswith(b"not a pdf")
    assert not (layout.errors / "fake.pdf").exists()


def test_errors_pointed_at_another_folder_clears_nothing_and_status_says_so(
        tmp_path: Path) -> None:
    """With `errors =` changed to a new, empty folder, the earlier failure is not cleared:
    `status` alarms that it cannot be seen there and says what to do, and retry refuses
    with that; once its file and its marker's line are moved into the new folder, it is
    seen and retried there."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=0)
    daemon.prepare()
    try:
        file_id = _failed_in_errors(layout, daemon)
    finally:
        daemon.close()
    (tmp_path / "errors2").mkdir()
    layout.folder["errors"] = "errors2"
    layout.write()
    settings = config.load(layout.config)
    daemon = Daemon(settings, batch_threads=0)
    daemon.prepare()
    try:
        assert daemon.store is not None
        daemon.sinks["scans"].failures.reconcile()
        assert daemon.store.file(file_id).state == FileState.FAILED
        # While the daemon runs, status takes the finding from its heartbeat: the
        # folder's errors thread works it out, so no status reads a share.
        probe = daemon.intakes["scans"].probe
        probe.start()
        wait_until(probe.failures_unseen, what="the errors thread's finding")
        daemon.loops["scans"].take_notes(time.time())  # as the folder's thread does
        daemon.keep_notes(time.time())  # the folders' notes, which the beat sends
        daemon.heartbeat()
        running = collect(settings, warnings=[])
        assert running["daemon"]["running"], running["daemon"]
        assert [a for a in running["alarms"] if "cannot be seen" in a] == \
            [f"folder scans: {probe.failures_unseen()}"]
    finally:
        daemon.close()
    alarms = [a for a in collect(settings, warnings=[])["alarms"] if "cannot be seen" in a]
    assert len(alarms) == 1 and "has no .folderseal-errors marker" in alarms[0], alarms
    assert "set errors back" in alarms[0]
    out = subprocess.run([sys.executable, "-m", "folderseal", "retry", "-c", str(layout.config),
                          file_id], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "is not the errors folder it went to" in out.stderr, out.stderr
    # What the alarm says to do: move the files here, and the old marker's line with them.
    for name in ("fake.pdf", "fake.pdf.error.json"):
        (layout.errors / name).rename(tmp_path / "errors2" / name)
    with (tmp_path / "errors2" / ".folderseal-errors").open("a") as marker:
        marker.write((layout.errors / ".folderseal-errors").read_text())
    assert not [a for a in collect(settings, warnings=[])["alarms"] if "cannot be seen" in a]
    assert retry(settings, [file_id]) == 0
    assert (layout.inbox / "fake.pdf").read_bytes().startswith(b"not a pdf")


def test_a_file_changed_in_place_is_read_once(daemon: Daemon, reads: list[int]) -> None:
    """A failure's file changed in place (same size, new content) is read once to tell:
    it stays listed as changed, and later passes do not read it again while it stays as
    it is."""
    layout = Layout(Path(daemon.settings.state_dir).parent)
    file_id = _failed_in_errors(layout, daemon)
    original = (layout.errors / "fake.pdf").read_bytes()
    with (layout.errors / "fake.pdf").open("r+b") as f:
        f.write(b"N" * len(original))  # same inode, same size, other content
    reads.clear()
    _reconcile(daemon)
    assert reads == [len(original)]
    _reconcile(daemon)
    _reconcile(daemon)
    assert reads == [len(original)]
    assert _state(daemon, file_id) == FileState.FAILED


def test_a_cleared_failure_is_looked_for_again_only_when_its_folder_changes(
        daemon: Daemon, reads: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure whose file was replaced by another is cleared after one read; later
    passes neither read nor look at its place while its folder stays as it is; once its
    very file is put back (the folder changes), it is found again."""
    layout = Layout(Path(daemon.settings.state_dir).parent)
    file_id = _failed_in_errors(layout, daemon)
    path = layout.errors / "fake.pdf"
    original = path.read_bytes()
    path.rename(layout.root / "kept-aside")
    path.write_bytes(b"N" * len(original))  # another file put in its place
    reads.clear()
    _reconcile(daemon)
    assert _state(daemon, file_id) == FileState.CLEARED and reads == [len(original)]
    looked: list[Path] = []
    real = errorfiles.identity
    monkeypatch.setattr(errorfiles, "identity",
                        lambda p, hashed=True: looked.append(p) or real(p, hashed))
    _reconcile(daemon)
    _reconcile(daemon)
    assert reads == [len(original)] and looked == []
    path.unlink()
    (layout.root / "kept-aside").rename(path)
    _reconcile(daemon)
    assert _state(daemon, file_id) == FileState.FAILED and looked == [path]


def test_a_pass_reads_no_more_than_its_budget(daemon: Daemon, reads: list[int],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures whose files all changed their mtime must be read to be told: a pass
    reads up to its budget (at least one file) and leaves the rest to the next passes,
    clearing none meanwhile."""
    layout = Layout(Path(daemon.settings.state_dir).parent)
    ids = [_failed_in_errors(layout, daemon, f"f{i}.pdf") for i in range(3)]
    for i in range(3):
        st = os.stat(layout.errors / f"f{i}.pdf")
        os.utime(layout.errors / f"f{i}.pdf", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    monkeypatch.setattr(errorfiles, "READ_BUDGET_BYTES", 1)
    reads.clear()
    for passes in (1, 2, 3):
        _reconcile(daemon)
        assert len(reads) == passes
    assert all(_state(daemon, i) == FileState.FAILED for i in ids)
    moved = [_place(daemon, i)["mtime_ns"] for i in ids]
    assert moved == [os.stat(layout.errors / f"f{i}.pdf").st_mtime_ns for i in range(3)]
    _reconcile(daemon)
    assert len(reads) == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("planted", ["link", "pipe"])
def test_a_marker_that_is_not_a_plain_file_is_not_read(daemon: Daemon, planted: str) -> None:
    """A dropper who swaps the errors folder's marker for a link (to the real marker
    moved away) or a named pipe gets it neither followed nor waited on: nothing is sure
    there, nothing is cleared, and status says what is wrong and what to do."""
    layout = Layout(Path(daemon.settings.state_dir).parent)
    file_id = _failed_in_errors(layout, daemon)
    marker = layout.errors / errorfiles.MARKER
    marker.rename(layout.root / "moved-marker")
    if planted == "link":
        marker.symlink_to(layout.root / "moved-marker")
    else:
        os.mkfifo(marker)
    (layout.errors / "fake.pdf").unlink()
    _reconcile(daemon)  # a pipe opened for reading would wait for a writer for ever
    assert _state(daemon, file_id) == FileState.FAILED
    [alarm] = _unseen(daemon)
    assert "is not a plain file" in alarm and "delete it" in alarm, alarm


def test_a_deleted_marker_is_made_again_from_the_files_found(daemon: Daemon) -> None:
    """With the errors folder's marker deleted, a later failure gives the folder a new id
    and the earlier failure cannot be seen there; the next reconcile finds its file by
    content and adds its folder's id to the marker: it is seen again, and cleared once
    its file is really gone."""
    layout = Layout(Path(daemon.settings.state_dir).parent)
    first = _failed_in_errors(layout, daemon)
    old_id = _place(daemon, first)["folder_id"]
    (layout.errors / errorfiles.MARKER).unlink()
    second = _failed_in_errors(layout, daemon, "later.pdf")
    new_id = _place(daemon, second)["folder_id"]
    assert new_id != old_id and len(_unseen(daemon)) == 1
    _reconcile(daemon)
    assert errorfiles.folder_ids(layout.errors) == [new_id, old_id]
    assert _unseen(daemon) == []
    (layout.errors / "fake.pdf").unlink()
    _reconcile(daemon)
    assert _state(daemon, first) == FileState.CLEARED
    assert _state(daemon, second) == FileState.FAILED


def test_a_failure_recorded_before_folders_had_ids_is_adopted(daemon: Daemon) -> None:
    """A failure whose place names no errors folder (0.1.0 recorded none) is found by its
    content, and its place gets the folder's id and hint: removed by hand later, it is
    cleared instead of listed for ever."""
    layout = Layout(Path(daemon.settings.state_dir).parent)
    file_id = _failed_in_errors(layout, daemon)
    assert daemon.store is not None
    record = daemon.store.file(file_id)
    assert record is not None
    legacy = {k: v for k, v in _place(daemon, file_id).items()
              if k in ("role", "path", "n", "plain")}
    daemon.store.set_error_place(record, legacy)
    _reconcile(daemon)
    place = _place(daemon, file_id)
    assert place["folder_id"] == errorfiles.folder_ids(layout.errors)[0]
    assert place["ino"] == os.stat(layout.errors / "fake.pdf").st_ino
    (layout.errors / "fake.pdf").unlink()
    _reconcile(daemon)
    assert _state(daemon, file_id) == FileState.CLEARED
