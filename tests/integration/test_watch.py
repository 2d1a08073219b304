"""The watcher on a real folder: real inotify through watchdog, and its fallbacks."""

from __future__ import annotations

import errno
import queue
import threading
import time
from pathlib import Path

import pytest

from folderseal.core import config
from folderseal.intake.watch import Watcher, _Observer
from folderseal.store.sqlite import SqliteStore
from tests.helpers import Layout
from tests.intake_parts import folder_intake


def _hints(hints: queue.SimpleQueue, seconds: float) -> list:
    found = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found.append(hints.get(timeout=0.05))
        except queue.Empty:
            continue
    return found


def test_events_arrive_for_files_but_not_for_hidden_folders(tmp_path: Path) -> None:
    """A file written into the inbox raises a hint; work done in .folderseal/ raises none."""
    hidden = tmp_path / ".folderseal" / "work" / "incoming"
    hidden.mkdir(parents=True)
    hints: queue.SimpleQueue = queue.SimpleQueue()
    watcher = Watcher("scans", tmp_path, True, hints, threading.Event())
    assert watcher.start_events() is None
    try:
        (hidden / "claim").mkdir()
        (hidden / "claim" / "x.pdf").write_text("in the work folder")
        (tmp_path / "sub").mkdir()
        time.sleep(0.3)
        (tmp_path / "sub" / "scan.pdf").write_text("dropped")
        paths = [path for _folder, path in _hints(hints, 1.0)]
    finally:
        watcher.stop()
    assert str(tmp_path / "sub" / "scan.pdf") in paths
    assert not [p for p in paths if p and ".folderseal" in p]
    assert None in paths  # the new subfolder asks for a rescan


def test_no_inotify_watch_is_placed_on_hidden_folders(tmp_path: Path) -> None:
    """The recursive watch covers visible subfolders only."""
    (tmp_path / ".folderseal" / "work").mkdir(parents=True)
    (tmp_path / "visible" / "deeper").mkdir(parents=True)
    observer = _Observer()
    from watchdog.events import FileSystemEventHandler
    observer.schedule(FileSystemEventHandler(), str(tmp_path), recursive=True)
    observer.start()
    try:
        time.sleep(0.2)
        emitter = next(iter(observer.emitters))
        watched = {p.decode() for p in emitter._inotify._active_callbacks_by_path}
    finally:
        observer.stop()
        observer.join()
    assert watched == {str(tmp_path), str(tmp_path / "visible"),
                       str(tmp_path / "visible" / "deeper")}


def test_running_out_of_inotify_watches_falls_back_to_polling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When inotify has no watches left, the folder is polled instead, and the log says why."""
    layout = Layout(tmp_path)
    layout.write()
    settings = config.load(layout.config)

    def exhausted(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(_Observer, "schedule", exhausted)
    store = SqliteStore.open(settings.state_dir, "node")
    intake = folder_intake(settings, store)
    assert intake.attach(time.time())
    assert intake.mode == "polling"
    assert intake.notes(0.0)["mode"] == "polling"
    store.close()


def test_polling_mode_still_claims_files(tmp_path: Path) -> None:
    """With watch = polling, a scan finds a dropped file and it is claimed after settling."""
    layout = Layout(tmp_path, folder={"watch": "polling", "settle_seconds": 0.1,
                                      "poll_interval_seconds": 0.2})
    layout.write()
    settings = config.load(layout.config)
    store = SqliteStore.open(settings.state_dir, "node")
    intake = folder_intake(settings, store)
    assert intake.attach(time.time()) and intake.mode == "polling"
    (layout.inbox / "polled.txt").write_text("found by a scan")
    deadline = time.time() + 5
    while time.time() < deadline and not store.file_ids("scans"):
        intake.step(time.time(), [])
        time.sleep(0.05)
    intake.stop()
    [claim_id] = store.file_ids("scans")
    record = store.file(claim_id)
    assert record is not None and record.source == "polled.txt"
    assert not (layout.inbox / "polled.txt").exists()
    store.close()
