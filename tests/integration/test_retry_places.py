"""`folderseal retry` where a place its files move between is not as usual: the inbox's or
the errors folder's share not mounted (an empty mount point), the errors folder on
another filesystem (a copy, then a removal), an original that stayed in the work folder.

Whatever happens, each file stays in exactly one place the store accounts for, nothing
lands on the local disk under a mount point, and each file is sealed once. The daemon is
the real one in this process over the scripted fake SEAL; `retry` is a real subprocess.
Shares are bind mounts of a backing folder, and the other filesystem is a tmpfs: root
only.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from folderseal.core.model import FileState
from folderseal.store.sqlite import SqliteStore
from tests.helpers import Layout
from tests.integration.test_retry_crash import (
    _accounted,
    _failed_after_accept,
    _failed_before_accept,
    _retry,
    _sealed_once,
    reconciled,
)
from tests.integration.test_seal_flow import KEY, _daemon, _drain, _layout, _run
from tests.seal_fake import FakeSealApi

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts folders: needs root (CI "
                                                          "runs as root)")


class Share:
    """A folder served by a bind mount of a backing folder, as a network share is: away,
    its mount point is an empty folder of the local disk."""

    def __init__(self, mount_point: Path) -> None:
        self.mount_point = mount_point
        self.backing = mount_point.with_name(mount_point.name + "-share")
        self.backing.mkdir()
        self.mounted = False  # os.path.ismount cannot tell a bind mount on the same disk
        self.back()

    def away(self) -> None:
        subprocess.run(["umount", str(self.mount_point)], check=True)
        self.mounted = False

    def back(self) -> None:
        subprocess.run(["mount", "--bind", str(self.backing), str(self.mount_point)],
                       check=True)
        self.mounted = True


@pytest.fixture
def share() -> Iterator[Callable[[Path], Share]]:
    made: list[Share] = []

    def make(mount_point: Path) -> Share:
        made.append(Share(mount_point))
        return made[-1]

    yield make
    for each in made:
        if each.mounted:
            each.away()


def _failed(layout: Layout, fake: FakeSealApi, way: str) -> tuple[list[str], dict[str, str],
                                                                   list[str]]:
    """Two files in errors that retry puts back into the inbox (a create refused) or into
    their batch (a poll of the accepted batch refused): their names or ids, their digests,
    and the ids to give retry."""
    if way == "inbox":
        return *_failed_before_accept(layout, fake), ["--all"]
    ids, dropped = _failed_after_accept(layout, fake)
    store = SqliteStore.open(layout.state, "check")
    batch = store.file(ids[0]).batch_id  # type: ignore[union-attr]
    store.close()
    assert batch is not None
    return ids, dropped, [batch]


def _killed(layout: Layout, fake: FakeSealApi, way: str) -> tuple[list[str], dict[str, str]]:
    """As :func:`_failed`, then a retry of them killed once it recorded its intent."""
    ids, dropped, given = _failed(layout, fake, way)
    killed = _retry(layout, *given, crash_at="retry:recorded")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    return ids, dropped


def _sealed(layout: Layout, fake: FakeSealApi, way: str, ids: list[str],
            dropped: dict[str, str]) -> None:
    """The retried files sealed by a daemon started again, each once, accepted once."""
    if way == "batch":
        _drain(_daemon(layout, fake), ids)
    else:
        daemon = _daemon(layout, fake)
        try:
            _run(daemon, ids)
        finally:
            daemon.close()
    _sealed_once(layout, dropped)
    assert fake.count("accept") == 1


def _states(layout: Layout) -> dict[str, FileState]:
    store = SqliteStore.open(layout.state, "check")
    try:
        return {r.source: r.state for state in FileState
                for r in store.files_in_state("scans", state)}
    finally:
        store.close()


@pytest.mark.parametrize("way", ["inbox", "batch"])
def test_retry_while_the_inbox_share_is_away_moves_nothing(
        tmp_path: Path, share: Callable[[Path], Share], way: str) -> None:
    """With the inbox's share not mounted, `retry` refuses and says to mount it: nothing is
    made under the empty mount point and the files stay in errors, listed; with the share
    back, retry puts them back and each is sealed once."""
    layout = _layout(tmp_path)
    inbox = share(layout.inbox)
    fake = FakeSealApi(key=KEY)
    ids, dropped, given = _failed(layout, fake, way)
    inbox.away()
    out = _retry(layout, *given)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"the inbox {layout.inbox} is not there" in out.stderr and "mount it" in out.stderr
    assert os.listdir(layout.inbox) == []
    assert set(_states(layout).values()) == {FileState.FAILED}
    inbox.back()
    _accounted(layout, dropped)
    out = _retry(layout, *given)
    assert out.returncode == 0, out.stdout + out.stderr
    _sealed(layout, fake, way, ids, dropped)


@pytest.mark.parametrize("way", ["inbox", "batch"])
def test_an_interrupted_retry_waits_for_the_inbox_share(
        tmp_path: Path, share: Callable[[Path], Share], way: str,
        debug_log: io.StringIO) -> None:
    """A retry killed after recording its intent, and the daemon started again while the
    inbox's share is away: it makes no work folder on the empty mount point, and its
    reconcile leaves the files RETRYING; once the share is back, the reconcile finishes
    the retry and each file is sealed once."""
    layout = _layout(tmp_path)
    inbox = share(layout.inbox)
    fake = FakeSealApi(key=KEY)
    ids, dropped = _killed(layout, fake, way)
    inbox.away()
    daemon = _daemon(layout, fake)
    try:
        reconciled(daemon, debug_log)
        assert os.listdir(layout.inbox) == []
        assert FileState.RETRYING in _states(layout).values()
        inbox.back()
        reconciled(daemon, debug_log, passes=2)
        assert FileState.RETRYING not in _states(layout).values()
    finally:
        daemon.close()
    _accounted(layout, dropped)
    out = _retry(layout, "--all")  # the file the killed retry had not come to yet
    assert out.returncode == 0, out.stdout + out.stderr
    _sealed(layout, fake, way, ids, dropped)


@pytest.mark.parametrize("by", ["retry", "reconcile"])
def test_an_interrupted_retry_waits_for_the_errors_share(
        tmp_path: Path, share: Callable[[Path], Share], by: str,
        debug_log: io.StringIO) -> None:
    """A retry into the inbox killed after recording its intent, then finished (by retry,
    or the daemon's reconcile) while the errors folder's share is away: the file is not
    taken as put back, it stays RETRYING and nothing reaches the inbox; with the share
    back it is finished, and each file is sealed once."""
    layout = _layout(tmp_path)
    errors = share(layout.errors)
    fake = FakeSealApi(key=KEY)
    names, dropped = _killed(layout, fake, "inbox")
    errors.away()
    if by == "retry":
        out = _retry(layout, "--all")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "an interrupted retry not finished" in out.stderr, out.stderr
        assert "is not the errors folder" in out.stderr, out.stderr
    else:
        daemon = _daemon(layout, fake)
        try:
            reconciled(daemon, debug_log)
        finally:
            daemon.close()
    assert sorted(_states(layout).values()) == [FileState.FAILED, FileState.RETRYING]
    assert [p.name for p in layout.inbox.iterdir()] == [".folderseal"]
    errors.back()
    if by == "retry":
        out = _retry(layout, "--all")
        assert out.returncode == 0 and "an interrupted retry finished" in out.stdout, out.stdout
    else:
        daemon = _daemon(layout, fake)
        try:
            reconciled(daemon, debug_log)
        finally:
            daemon.close()
        _accounted(layout, dropped)
        out = _retry(layout, "--all")
        assert out.returncode == 0, out.stdout + out.stderr
    _accounted(layout, dropped)
    _sealed(layout, fake, "inbox", names, dropped)


def _remount(folder: Path, how: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{how}", str(folder)], check=True)


@pytest.mark.parametrize("killed", [False, True], ids=["refused", "killed-then-refused"])
def test_a_copy_from_another_filesystem_is_never_left_in_two_places(
        tmp_path: Path, killed: bool) -> None:
    """With errors on another filesystem, a batch retry whose copy got its name in the
    batch folder but whose original could not be removed from errors (read-only; or the
    retry killed between the copy and the removal, then read-only) is undone without
    leaving the copy behind: each file in one place, FAILED and listed; with errors
    writable again, retry puts them back and each is sealed once, never submitted again."""
    layout = _layout(tmp_path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(layout.errors)],
                   check=True)
    try:
        fake = FakeSealApi(key=KEY)
        ids, dropped, given = _failed(layout, fake, "batch")
        if killed:
            out = _retry(layout, *given, crash_at="move:copied")
            assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
            copies = [p for p in (layout.work / "batches").rglob("*") if p.is_file()
                      and not p.name.startswith(".")]
            assert len(copies) == 1 and len(list(layout.errors.glob("*.error.json"))) == 2
        _remount(layout.errors, "ro")
        try:
            out = _retry(layout, *given)
        finally:
            _remount(layout.errors, "rw")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Read-only file system" in out.stderr, out.stderr
        _accounted(layout, dropped)
        assert set(_states(layout).values()) == {FileState.FAILED}
        out = _retry(layout, *given)
        assert out.returncode == 0, out.stdout + out.stderr
        _sealed(layout, fake, "batch", ids, dropped)
        assert (fake.count("create"), fake.count("upload")) == (1, 1)
    finally:
        subprocess.run(["umount", str(layout.errors)], check=True)


def test_an_unreadable_original_kept_in_the_work_folder_is_named_as_such(
        tmp_path: Path) -> None:
    """A batch retry whose original stayed in the work folder (it could not be moved to
    errors) and which retry may not read is refused naming that file and that it cannot
    be read; once it can be, the batch is asked again with it where it is, and each file
    is sealed once."""
    layout = _layout(tmp_path)
    fake = FakeSealApi(key=KEY)
    ids, dropped, given = _failed(layout, fake, "batch")
    store = SqliteStore.open(layout.state, "check")
    try:
        record = store.file(ids[0])
        assert record is not None and record.batch_id and record.entry
        place = next(o for o in record.outputs if o.get("role") == "error")
        kept = layout.work / "batches" / record.batch_id / record.entry
        kept.parent.mkdir(parents=True, exist_ok=True)
        (layout.errors / place["path"]).rename(kept)
        store.set_error_place(record, {k: place[k] for k in ("role", "path", "n", "plain")}
                              | {"kept": str(kept)})
    finally:
        store.close()
    kept.chmod(0)
    no_override = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    out = subprocess.run([*no_override, sys.executable, "-m", "folderseal", "retry", "-c",
                          str(layout.config), *given], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{kept} cannot be read" in out.stderr, out.stderr
    assert "in the errors folder is not" not in out.stderr
    kept.chmod(0o644)
    out = _retry(layout, *given)
    assert out.returncode == 0, out.stdout + out.stderr
    _sealed(layout, fake, "batch", ids, dropped)
    assert (fake.count("create"), fake.count("upload")) == (1, 1)
