"""`folderseal retry` killed (SIGKILL) at each of its crash points, the inbox way and the
batch way: afterwards every file is in errors with its record and listed, or back in the
inbox or its batch, and once the next `retry` or the daemon's reconcile of the errors
folder has finished what the killed one began, every file is sealed exactly once.

The daemon is the real one in this process (its intake, state machine and sink) over the
scripted fake SEAL of test_seal_flow; `retry` is a real subprocess.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from folderseal.core.model import BatchState, FileState
from folderseal.service.daemon import Daemon
from folderseal.store.sqlite import SqliteStore
from tests.helpers import Layout, error_records, log_events, sidecars, wait_until
from tests.integration.test_seal_flow import KEY, _daemon, _drain, _drop, _layout, _run
from tests.seal_fake import FakeSealApi


def _retry(layout: Layout, *args: str, crash_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FOLDERSEAL_CRASH_AT"}
    if crash_at:
        env["FOLDERSEAL_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "folderseal", "retry", "-c",
                           str(layout.config), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _accounted(layout: Layout, dropped: dict[str, str]) -> None:
    """Each dropped file is in exactly one place the store accounts for: in errors with its
    record beside it and FAILED (so listed), back in the inbox and RETRIED, or in its
    batch folder, BATCHED in a batch that is not failed."""
    store = SqliteStore.open(layout.state, "check")
    try:
        by_sha = {r.sha256: r for state in FileState for r in store.files_in_state(
            "scans", state) if r.sha256 in dropped.values()}
        places: dict[str, list[str]] = {digest: [] for digest in dropped.values()}
        for path in layout.errors.rglob("*"):
            if path.is_file() and not path.name.endswith(".error.json") \
                    and not path.name.startswith("."):
                record = by_sha[_digest(path)]
                assert record.state == FileState.FAILED, (path, record.state)
                assert path.with_name(path.name + ".error.json").exists(), path
                places[_digest(path)].append("errors")
        for path in layout.inbox.rglob("*"):
            if path.is_file() and layout.work not in path.parents and path.parent != \
                    layout.inbox / ".folderseal":
                assert not path.name.startswith("."), f"a hidden file left in the inbox: {path}"
                assert by_sha[_digest(path)].state == FileState.RETRIED, path
                places[_digest(path)].append("inbox")
        for path in (layout.work / "batches").rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                record = by_sha[_digest(path)]
                batch = store.batch(record.batch_id or "")
                assert record.state == FileState.BATCHED and batch is not None \
                    and batch.state != BatchState.FAILED, (path, record.state, batch)
                places[_digest(path)].append("batch")
        assert all(len(found) == 1 for found in places.values()), places
        failed = {r.sha256 for r in store.failed_files()}
        assert failed == {d for d, found in places.items() if found == ["errors"]}
    finally:
        store.close()


def reconciled(daemon: Daemon, log: io.StringIO, passes: int = 1) -> None:
    """Wait for ``passes`` more passes of the folder's reconcile thread (started if it is
    not yet), which has a store of its own and takes the retry lock without waiting."""
    before = len(log_events(log, "errors.reconciled"))
    daemon.intakes["scans"].probe.start()
    wait_until(lambda: len(log_events(log, "errors.reconciled")) >= before + passes,
               timeout=60, what=f"{passes} reconcile pass(es)")


def _finish(layout: Layout, fake: FakeSealApi, by: str, log: io.StringIO) -> Daemon:
    """What the killed retry began, finished by the next retry or by the daemon started
    again (its reconcile of the errors folder)."""
    if by == "retry":
        out = _retry(layout, "--all")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "an interrupted retry finished" in out.stdout, out.stdout
        return _daemon(layout, fake)
    daemon = _daemon(layout, fake)
    reconciled(daemon, log)
    return daemon


def _sealed_once(layout: Layout, dropped: dict[str, str]) -> None:
    digests = sorted(json.loads(p.read_text())["input"]["sha256"] for p in sidecars(layout.outbox))
    assert digests == sorted(dropped.values())
    assert error_records(layout.errors) == []


def _failed_before_accept(layout: Layout, fake: FakeSealApi) -> tuple[list[str], dict[str, str]]:
    """Both files in errors after SEAL refused to create their batch: their names and
    digests."""
    fake.script("create", "400")
    daemon = _daemon(layout, fake)
    names = _drop(layout)
    dropped = {n: _digest(layout.inbox / n) for n in names}
    try:
        _run(daemon, names)
    finally:
        daemon.close()
    assert len(error_records(layout.errors)) == 2
    return names, dropped


@pytest.mark.parametrize("by", ["retry", "reconcile"])
@pytest.mark.parametrize("point", ["retry:recorded", "retry:staged", "retry:moved"])
def test_a_retry_into_the_inbox_killed_at_each_point(tmp_path: Path, point: str, by: str,
                                                     debug_log: io.StringIO) -> None:
    """A create refused with 400 sends both files to errors; `retry --all` killed at the
    point leaves each file in errors (listed) or in the inbox, never both and never
    neither; finished by the next retry or the daemon, both are sealed once."""
    layout = _layout(tmp_path)
    fake = FakeSealApi(key=KEY)
    names, dropped = _failed_before_accept(layout, fake)
    killed = _retry(layout, "--all", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    daemon = _finish(layout, fake, by, debug_log)
    daemon.close()
    _accounted(layout, dropped)
    out = _retry(layout, "--all")  # the file the killed retry had not come to yet
    assert out.returncode == 0, out.stdout + out.stderr
    _accounted(layout, dropped)
    daemon = _daemon(layout, fake)
    try:
        _run(daemon, names)
    finally:
        daemon.close()
    _sealed_once(layout, dropped)
    assert fake.count("accept") == 1
    assert [p for p in layout.inbox.iterdir() if p.name != ".folderseal"] == []


def _failed_after_accept(layout: Layout, fake: FakeSealApi) -> tuple[list[str], dict[str, str]]:
    """Both files of a batch in errors after SEAL refused a poll of the accepted batch."""
    fake.script("status", None, None, "400")
    daemon = _daemon(layout, fake)
    names = _drop(layout)
    dropped = {n: _digest(layout.inbox / n) for n in names}
    try:
        ids = _run(daemon, names)
        assert daemon.store is not None
        batch = daemon.store.batch(daemon.store.file(ids[0]).batch_id)
        assert batch is not None and batch.failed_step == BatchState.ACCEPTED
    finally:
        daemon.close()
    assert len(error_records(layout.errors)) == 2
    return ids, dropped


@pytest.mark.parametrize("by", ["retry", "reconcile"])
@pytest.mark.parametrize("point", ["retry:recorded", "retry:moved@1", "retry:moved@2"])
def test_a_retry_into_its_batch_killed_at_each_point(tmp_path: Path, point: str, by: str,
                                                     debug_log: io.StringIO) -> None:
    """A batch that failed after accept, retried (`retry BATCH`) and killed at the point:
    its files are all in errors (listed) or all back in the batch; finished by the next
    retry or the daemon, the same remote batch is asked again and each file is sealed
    once, never submitted or accepted again."""
    layout = _layout(tmp_path)
    fake = FakeSealApi(key=KEY)
    ids, dropped = _failed_after_accept(layout, fake)
    store = SqliteStore.open(layout.state, "check")
    batch = store.file(ids[0]).batch_id  # type: ignore[union-attr]
    store.close()
    assert batch is not None
    killed = _retry(layout, batch, crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    daemon = _finish(layout, fake, by, debug_log)
    _accounted(layout, dropped)
    _drain(daemon, ids)
    _sealed_once(layout, dropped)
    assert (fake.count("create"), fake.count("upload"), fake.count("accept")) == (1, 1, 1)


def test_a_retry_whose_move_fails_is_undone(tmp_path: Path) -> None:
    """When a file of a batch cannot be moved into its batch folder, the files moved
    already go back: both stay in errors with their records, listed, and the message
    says what to do; once the cause is gone, retry puts them back."""
    layout = _layout(tmp_path)
    fake = FakeSealApi(key=KEY)
    ids, dropped = _failed_after_accept(layout, fake)
    store = SqliteStore.open(layout.state, "check")
    records = [store.file(i) for i in ids]
    store.close()
    last = max(records, key=lambda r: r.entry or "")  # type: ignore[union-attr]
    assert last is not None and last.batch_id is not None and last.entry is not None
    obstacle = layout.work / "batches" / last.batch_id / last.entry
    obstacle.mkdir(parents=True)  # a folder in the way of its last file
    out = _retry(layout, last.batch_id)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "could not be moved" in out.stderr and "retry it again" in out.stderr, out.stderr
    _accounted(layout, dropped)
    assert len(error_records(layout.errors)) == 2
    obstacle.rmdir()
    out = _retry(layout, last.batch_id)
    assert out.returncode == 0, out.stdout + out.stderr
    _drain(_daemon(layout, fake), ids)
    _sealed_once(layout, dropped)
    assert fake.count("accept") == 1



def test_an_interrupted_batch_retry_whose_batch_the_store_lost_says_what_to_do(
        tmp_path: Path) -> None:
    """A batch retry killed once its files were back in the batch folder, with the batch
    then missing from the store (a store replaced or damaged): the next retry does not
    crash, leaves the files where they are, and says to run folderseal recover."""
    layout = _layout(tmp_path)
    fake = FakeSealApi(key=KEY)
    ids, _ = _failed_after_accept(layout, fake)
    store = SqliteStore.open(layout.state, "check")
    batch = store.file(ids[0]).batch_id  # type: ignore[union-attr]
    store.close()
    assert batch is not None
    killed = _retry(layout, batch, crash_at="retry:moved@2")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    with closing(sqlite3.connect(layout.state / "folderseal.sqlite")) as db, db:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DELETE FROM batches WHERE id = ?", (batch,))
    out = _retry(layout, "--all")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert f"its batch {batch} is not in the store" in out.stderr, out.stderr
    assert "run folderseal recover" in out.stderr
    assert len(list((layout.work / "batches" / batch).glob("0*"))) == 2
