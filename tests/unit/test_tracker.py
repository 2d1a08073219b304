"""Tests for folderseal.providers.local.tracker: multiprocessing's resource tracker stopped at
exit, and
the private attributes that relies on pinned for the Python the tests run on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from multiprocessing import resource_tracker

import pytest

from folderseal.providers.local import tracker


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_private_attributes_it_relies_on_are_there() -> None:
    """This Python's resource tracker has what stop_resource_tracker uses (_lock, _fd, _pid,
    and _stop() from 3.11.7 on): an upgrade that changes them fails here, not at a stop."""
    real = resource_tracker._resource_tracker
    assert isinstance(real, resource_tracker.ResourceTracker)
    for name in ("_lock", "_fd", "_pid"):
        assert hasattr(real, name), name
    if sys.version_info >= (3, 11, 7):
        assert callable(getattr(real, "_stop", None))


def test_a_running_tracker_is_stopped_and_reaped() -> None:
    """The tracker this process started exits and is reaped; a later one can start."""
    resource_tracker.ensure_running()
    pid = resource_tracker._resource_tracker._pid
    assert pid is not None
    tracker.stop_resource_tracker()
    assert resource_tracker._resource_tracker._pid is None
    assert _gone(pid)
    resource_tracker.ensure_running()  # what the next pool's first worker does
    assert resource_tracker._resource_tracker._pid not in (None, pid)
    tracker.stop_resource_tracker()


def test_a_python_without_those_attributes_gets_a_warning_not_a_crash(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Where the private attributes are missing, the stop logs a warning and returns, so the
    daemon still closes its store and exits 0."""
    monkeypatch.setattr(resource_tracker, "_resource_tracker", object())
    with caplog.at_level(logging.WARNING, logger="folderseal.providers.local.tracker"):
        tracker.stop_resource_tracker()
    assert "could not be stopped (AttributeError" in caplog.text


class _Stuck:
    """A tracker whose _stop() waits for a process that never exits by itself."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._lock = threading.RLock()

    def _stop(self) -> None:
        os.waitpid(self._pid, 0)


def test_a_tracker_that_does_not_exit_is_killed_after_the_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """_stop() waits without a limit: a tracker still running after the timeout is
    killed, and the stop returns."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(resource_tracker, "_resource_tracker", _Stuck(child.pid))
    started = time.monotonic()
    tracker.stop_resource_tracker(timeout=0.5)
    assert time.monotonic() - started < 5
    assert _gone(child.pid)


class _Old:
    """A tracker as Pythons before 3.11.7 have it: no _stop()."""

    def __init__(self, fd: int, pid: int) -> None:
        self._fd, self._pid = fd, pid
        self._lock = threading.RLock()


def test_without_stop_the_pipe_is_closed_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without _stop(), closing this process's end of the pipe ends the tracker, which
    is reaped."""
    read, write = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", "import os; os.read(0, 1)"], stdin=read)
    os.close(read)
    old = _Old(write, child.pid)
    monkeypatch.setattr(resource_tracker, "_resource_tracker", old)
    tracker.stop_resource_tracker(timeout=10)
    assert old._fd is None and old._pid is None
    assert _gone(child.pid)
