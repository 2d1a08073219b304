"""The daemon's own threads, in process: real folders, store and provider."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from threading import Event

import pytest

from folderseal.core import config
from folderseal.core.errors import ExitCode, NodeNameTaken
from folderseal.providers import Provider
from folderseal.service import folderloop
from folderseal.service.daemon import HEARTBEAT_SECONDS, Daemon
from tests.helpers import FAST, Layout, sidecars, wait_until


def test_a_failure_in_the_provider_checks_thread_stops_the_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception escaping the thread that checks the providers again stops the daemon
    with exit 1 (so systemd restarts it), as one in any other thread does, instead of
    ending that thread unseen and leaving its warnings as they were for ever."""
    layout = Layout(tmp_path)
    layout.write()
    daemon = Daemon(config.load(layout.config), batch_threads=1)
    daemon.prepare()

    def broken(providers: Mapping[str, Provider], stop: Event) -> None:
        raise RuntimeError("a check that went wrong")

    monkeypatch.setattr(daemon.notices, "keep_checking", broken)
    unstopped = threading.Timer(30, daemon.stop.set)  # else a daemon that runs on
    unstopped.start()
    try:
        assert daemon.run() == ExitCode.FAILURE
    finally:
        unstopped.cancel()
    assert isinstance(daemon.fatal, RuntimeError)


def _beat(settings: config.Settings) -> float:
    """The node's last heartbeat as the store stamped it."""
    db = sqlite3.connect(f"file:{settings.database}?mode=ro", uri=True, timeout=10)
    try:
        return float(db.execute("SELECT heartbeat_at FROM nodes").fetchone()[0])
    finally:
        db.close()


def test_the_heartbeat_goes_on_while_an_intake_step_hangs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An intake step that blocks (a share that hangs) holds up its folder's thread, not
    the heartbeat: the node's heartbeat keeps advancing in the store meanwhile."""
    layout = Layout(tmp_path)
    layout.write()
    settings = config.load(layout.config)
    daemon = Daemon(settings, batch_threads=1)
    daemon.prepare()
    hung, release = threading.Event(), threading.Event()
    step = daemon.intakes["scans"].step

    def hanging_step(now: float, hints: list[str | None]) -> None:
        step(now, hints)
        hung.set()
        release.wait(30)
    monkeypatch.setattr(daemon.intakes["scans"], "step", hanging_step)
    moved: list[float] = []

    def watch() -> None:
        try:
            hung.wait(30)
            before = _beat(settings)
            time.sleep(3 * HEARTBEAT_SECONDS + 0.5)
            moved.append(_beat(settings) - before)
        finally:
            release.set()
            daemon.stop.set()
            daemon.wake.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert daemon.run() == ExitCode.OK
    finally:
        release.set()
        watcher.join()
    assert moved and moved[0] >= 2 * HEARTBEAT_SECONDS, moved


def test_a_folder_whose_intake_hangs_holds_up_no_other_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One folder's intake step blocks (its share hangs): the other folder claims and
    seals on; past HUNG_SECONDS the hung folder is named by hung_folders (what /healthz
    and the heartbeat's notes show) but is not among the problems that stop systemd's
    watchdog pings (a restart would hang on the same share); once it answers, it is
    not named any more."""
    monkeypatch.setattr(folderloop, "HUNG_SECONDS", 1.0)
    other = "\n".join(["", "[folders.other]", 'inbox = "other/inbox"',
                       'outbox = "other/outbox"', 'errors = "other/errors"',
                       'provider = "local"', *(f"{k} = {v!r}" for k, v in FAST.items())])
    layout = Layout(tmp_path, extra=other.replace("'", '"') + "\n")
    layout.write()
    for sub in ("inbox", "outbox", "errors"):
        (tmp_path / "other" / sub).mkdir(parents=True)
    daemon = Daemon(config.load(layout.config), batch_threads=1)
    daemon.prepare()
    hanging, release = threading.Event(), threading.Event()
    step = daemon.intakes["scans"].step

    def hanging_step(now: float, hints: list[str | None]) -> None:
        step(now, hints)
        if not release.is_set():
            hanging.set()
            release.wait(60)
    monkeypatch.setattr(daemon.intakes["scans"], "step", hanging_step)
    seen: dict[str, object] = {}

    def watch() -> None:
        try:
            hanging.wait(30)
            (tmp_path / "other" / "inbox" / "o.txt").write_text("sealed beside a hung folder")
            wait_until(lambda: len(sidecars(tmp_path / "other" / "outbox")) == 1, timeout=30,
                       what="the other folder's file sealed")
            wait_until(lambda: bool(daemon.hung_folders()), timeout=10, what="named hung")
            seen["hung"] = daemon.hung_folders()
            seen["problems"] = daemon.problems()
            seen["notes"] = daemon.loops["scans"].notes()["problem"]
            release.set()
            wait_until(lambda: not daemon.hung_folders(), timeout=10, what="hung no more")
            seen["after"] = daemon.health()
        finally:
            release.set()
            daemon.stop.set()
            daemon.wake.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert daemon.run() == ExitCode.OK
    finally:
        release.set()
        watcher.join()
    assert seen["problems"] == [], seen
    [hung] = seen["hung"]  # type: ignore[misc]
    assert hung.startswith("folder scans: its intake has waited "), hung
    assert str(layout.inbox) in hung and "the other folders go on" in hung, hung
    assert seen["notes"] == hung.removeprefix("folder scans: ")
    assert seen["after"] == [], seen


def test_a_node_name_taken_under_a_running_daemon_stops_it_with_exit_78(
        tmp_path: Path) -> None:
    """Another instance took this node's name (this one was thought dead): the next
    heartbeat finds it and the daemon stops with exit 78, naming why."""
    layout = Layout(tmp_path)
    layout.write()
    settings = config.load(layout.config)
    daemon = Daemon(settings, batch_threads=1)
    daemon.prepare()
    assert daemon.store is not None
    thief = daemon.store.connect()
    try:
        thief.register_node("another-instance", 4242, time.time(), alive_seconds=0.0)
    finally:
        thief.close()
    unstopped = threading.Timer(30, daemon.stop.set)
    unstopped.start()
    try:
        assert daemon.run() == ExitCode.CONFIG
    finally:
        unstopped.cancel()
    assert isinstance(daemon.fatal, NodeNameTaken)
    assert "was taken by another folderseal" in str(daemon.fatal)
