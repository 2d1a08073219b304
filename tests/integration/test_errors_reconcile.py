"""The errors folder reconciled with the store, in process: real store, real folders.

A failure whose original left the errors folder becomes CLEARED; an errors folder that
is another filesystem now (an empty mount point where a share should be) proves
nothing gone and clears nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from folderseal import config
from folderseal.daemon import Daemon
from folderseal.model import FileState
from tests.helpers import Layout


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
