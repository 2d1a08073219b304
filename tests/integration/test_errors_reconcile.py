"""The errors folder reconciled with the store, in process: real store, real folders.

A failure whose original left the errors folder becomes CLEARED; an errors folder that
is not the one the failure went to (an empty mount point where a share should be,
another folder configured) proves nothing gone and clears nothing; a file is known by
its content, whatever device and inode numbers a remount gives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from folderseal import config
from folderseal.daemon import Daemon
from folderseal.model import FileState
from folderseal.retry import retry
from folderseal.status import collect
from tests.helpers import Layout, wait_until


def _failed_in_errors(layout: Layout, daemon: Daemon) -> str:
    """fake.pdf taken and failed (not a PDF) by the daemon's own steps; its file id."""
    (layout.inbox / "fake.pdf").write_bytes(b"not a pdf at all\n%%EOF\n")
    intake = daemon.intakes["scans"]
    claim_id, reason = intake.claim_now("fake.pdf")
    assert claim_id is not None, reason
    assert intake.form_batches(float("inf"))
    store = daemon.store
    assert store is not None
    daemon.drain(lambda: store.file(claim_id).state == FileState.FAILED, timeout=60)
    assert (layout.errors / "fake.pdf").exists()
    return claim_id


def test_an_errors_folder_on_another_filesystem_clears_nothing(tmp_path: Path) -> None:
    """With another filesystem mounted over the errors folder (as an empty mount point
    shows while its share is away) nothing is marked CLEARED; once the file is really
    gone from the errors folder, it is."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs: needs root (CI runs as root)")
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(config.load(layout.config), job_threads=0)
    daemon.prepare()
    try:
        assert daemon.store is not None
        file_id = _failed_in_errors(layout, daemon)
        failures = daemon.intakes["scans"].sink.failures
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
        tmp_path: Path, changes: dict[str, int]) -> None:
    """After a remount (another device number) or on a filesystem whose inode numbers are
    not stable, the file still in errors is the failure's by its content: reconcile clears
    nothing (and records the new numbers), and retry puts it back into the inbox."""
    layout = Layout(tmp_path)
    layout.write()
    settings = config.load(layout.config)
    daemon = Daemon(settings, job_threads=0)
    daemon.prepare()
    try:
        assert daemon.store is not None
        file_id = _failed_in_errors(layout, daemon)
        _rewrite_place(daemon, file_id, **changes)
        daemon.intakes["scans"].sink.failures.reconcile()
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
    daemon = Daemon(config.load(layout.config), job_threads=0)
    daemon.prepare()
    try:
        file_id = _failed_in_errors(layout, daemon)
    finally:
        daemon.close()
    (tmp_path / "errors2").mkdir()
    layout.folder["errors"] = "errors2"
    layout.write()
    settings = config.load(layout.config)
    daemon = Daemon(settings, job_threads=0)
    daemon.prepare()
    try:
        assert daemon.store is not None
        daemon.intakes["scans"].sink.failures.reconcile()
        assert daemon.store.file(file_id).state == FileState.FAILED
        # While the daemon runs, status takes the finding from its heartbeat: the
        # folder's errors thread works it out, so no status reads a share.
        probe = daemon.intakes["scans"].probe
        probe.start()
        wait_until(probe.failures_unseen, what="the errors thread's finding")
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
