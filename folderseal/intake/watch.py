"""Watching an inbox: inotify events where they can be trusted, polling elsewhere.

Events are hints, never the truth: a scan of the folder at start and every
``rescan_seconds`` (or ``poll_interval_seconds`` when polling) reconciles what is
there. ``watch = "auto"`` uses events only on filesystems known to be local;
inotify does not see what other hosts write to a share. When inotify runs out of
watches the folder falls back to polling, and the mode chosen is logged.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyConstants, InotifyFD

from folderseal.core import mounts

# A hint: (folder name, absolute path) for a file, or (folder name, None) for "rescan".
Hint = tuple[str, str | None]


def choose_mode(setting: str, inbox: Path) -> tuple[str, str]:
    """The watch mode for an inbox, and why."""
    if setting != "auto":
        return setting, f"watch = {setting!r} in the configuration"
    mount = mounts.mount_of(inbox)
    if mount.is_local:
        return "events", f"{mount.fstype} is a local filesystem"
    return "polling", f"{mount.fstype} at {mount.point} may be written by other hosts"


class _VisibleWatchGroup(InotifyWatchGroup):
    """watchdog's recursive inotify watch, minus hidden folders.

    The intake ignores hidden folders anyway, and one of them is ``.folderseal`` with
    the work folder: watching it would turn every claim and batch (mkdir, rename,
    rmdir) into events that watchdog pairs up in a list searched linearly, which
    costs more than the rest of the daemon at a thousand files.
    """

    def _add_callback(self, path: bytes) -> None:
        relative = path[len(self.path):]
        if not any(part.startswith(b".") for part in relative.split(b"/")):
            super()._add_callback(path)


# The kernel events that can mean "a file arrived or changed". Not IN_MOVED_FROM: each
# claim moves a file out of the inbox, and watchdog holds every such event for half a
# second to pair it with its IN_MOVED_TO, stalling the events queued behind it. Not
# IN_OPEN or IN_CLOSE_NOWRITE either: the daemon's own reads would raise them.
_MASK = (InotifyConstants.IN_CREATE | InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_MODIFY
         | InotifyConstants.IN_CLOSE_WRITE | InotifyConstants.IN_ATTRIB
         | InotifyConstants.IN_DELETE_SELF | InotifyConstants.IN_DONT_FOLLOW)


class _VisibleEmitter(InotifyEmitter):
    def get_event_mask_from_filter(self) -> Any:
        return _MASK

    def on_thread_start(self) -> None:
        self._inotify = _VisibleWatchGroup(
            self._inotify_fd, os.fsencode(self.watch.path), is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(), follow_symlink=self.watch.follow_symlink)


class _Observer(InotifyObserver):
    def __init__(self) -> None:
        self._inotify_fd = InotifyFD()
        self._inotify_fd.start()
        BaseObserver.__init__(self, _VisibleEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT,
                              inotify_fd=self._inotify_fd)


class _Forwarder(FileSystemEventHandler):
    def __init__(self, folder: str, hints: queue.SimpleQueue[Hint],
                 wake: threading.Event) -> None:
        self.folder = folder
        self.hints = hints
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        if event.is_directory:
            # A folder moved in brings files that raise no events of their own.
            if event.event_type in ("created", "moved"):
                self.hints.put((self.folder, None))
                self.wake.set()
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.hints.put((self.folder, os.fsdecode(path)))
        self.wake.set()


class _OverflowListener(logging.Handler):
    """watchdog reports a kernel queue overflow only in its log: turn it into a rescan of
    every watched folder (the log does not say whose queue overflowed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.watchers: dict[str, Watcher] = {}   # inbox path → its watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            for watcher in list(self.watchers.values()):
                watcher.hints.put((watcher.folder, None))
                watcher.wake.set()


class Watcher:
    """One inotify observer for one inbox; ``None`` observer means polling."""

    def __init__(self, folder: str, inbox: Path, recursive: bool,
                 hints: queue.SimpleQueue[Hint], wake: threading.Event) -> None:
        self.folder = folder
        self.inbox = inbox
        self.recursive = recursive
        self.hints = hints
        self.wake = wake
        self.observer: Any = None

    def start_events(self) -> str | None:
        """Start inotify; returns None, or why it could not (the caller then polls)."""
        observer = _Observer()
        try:
            observer.schedule(_Forwarder(self.folder, self.hints, self.wake), str(self.inbox),
                              recursive=self.recursive)
            observer.start()
        except OSError as exc:
            observer.stop()
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                return (f"inotify has run out of watches ({exc.strerror}); raise "
                        "fs.inotify.max_user_watches to use events")
            return f"inotify failed: {exc.strerror or exc}"
        except RecursionError:  # watchdog walks the tree recursively
            observer.stop()
            return ("the inbox holds folders nested deeper than inotify's setup can follow; "
                    "polling lists them (down to a limit) instead")
        self.observer = observer
        _LISTENER.watchers[str(self.inbox)] = self
        return None

    @property
    def alive(self) -> bool:
        """False if the observer thread died (polling has no thread to die)."""
        observer = self.observer  # read once: the folder's thread may drop it meanwhile
        return observer is None or bool(observer.is_alive())

    def stop(self) -> None:
        if self.observer is not None:
            observer, self.observer = self.observer, None
            if _LISTENER.watchers.get(str(self.inbox)) is self:
                del _LISTENER.watchers[str(self.inbox)]
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:  # noqa: BLE001 - a dead share may fail the teardown
                pass


class _ShutdownNoise(logging.Filter):
    """watchdog logs an error when its emitter is stopped mid-read; stopping is ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_ShutdownNoise())

_LISTENER = _OverflowListener()
logging.getLogger("watchdog").addHandler(_LISTENER)
