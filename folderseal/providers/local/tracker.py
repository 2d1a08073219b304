"""multiprocessing's resource tracker, stopped when the daemon exits.

Starting a ``spawn`` process starts the tracker (``Process.start`` asks
``resource_tracker.getfd()`` for the pipe it hands each child), and the tracker outlives
every pool: it ignores SIGTERM and exits only once each holder of the pipe closed it, so
under systemd's ``KillMode=mixed`` every stop ended with a SIGKILL for it.

There is no public way to stop it. ``ResourceTracker._stop()`` (Python 3.11.7+, 3.12.1+)
closes the pipe and reaps the process; before that, this module does the same through
``_lock``, ``_fd`` and ``_pid``. Both are private, so every use is guarded: on a Python
where they changed, the tracker is left for systemd to kill and a warning says so, but
the daemon still closes its store and exits 0. tests/unit/test_tracker.py pins these
attributes for the Python the tests run on, so a change shows there first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from multiprocessing import resource_tracker
from typing import Any

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0  # seconds for the tracker to exit before it is killed


def stop_resource_tracker(timeout: float = STOP_TIMEOUT) -> None:
    """Stop the tracker, if it runs; call it once no worker is left (at exit). Killed after
    ``timeout`` if a worker somehow still holds the pipe. A later pool starts another."""
    try:
        tracker: Any = resource_tracker._resource_tracker
        pid = tracker._pid
        if pid is None:
            return
        stop = getattr(tracker, "_stop", None)
        # _stop() waits for the tracker without a timeout: a timer kills it if it lingers.
        killer = threading.Timer(timeout, _kill, (pid,))
        killer.start()
        try:
            stop() if stop is not None else _stop_by_hand(tracker)
        finally:
            killer.cancel()
    except Exception as exc:  # noqa: BLE001 - never let this keep the daemon from exiting
        log.warning("the resource tracker could not be stopped (%s: %s); systemd stops it",
                    type(exc).__name__, exc)


def _stop_by_hand(tracker: Any) -> None:
    """What ``ResourceTracker._stop()`` does, for a Python that lacks it."""
    with tracker._lock:
        fd, pid = tracker._fd, tracker._pid
        if fd is None or pid is None:
            return
        tracker._fd = tracker._pid = None
        os.close(fd)  # its end of the pipe: the tracker sees EOF and exits
    with contextlib.suppress(ChildProcessError):  # reaped already
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.01)


def _kill(pid: int) -> None:
    log.warning("the resource tracker %d did not stop; killing it", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
