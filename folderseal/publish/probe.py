"""A folder's output folders, looked at and written off the folder's intake thread.

A hard-mounted NFS or SMB share that stops answering blocks every ``stat()`` of it for
ever. The intake claims from the inbox and must know whether the output folders take
files, so it never touches an outbox, errors or archive folder itself: a hung outbox
would otherwise keep it from noticing. Each folder has two threads for that. One looks
at those folders every ``PROBE_SECONDS`` (there? writable? free space?). The other
writes the errors folder for the intake: it puts the files the intake rejected
(recorded ``REJECTED`` in the store: empty, not a regular file, stuck, a duplicate) into
it as soon as the intake says there are some, and every ``rescan_seconds`` reconciles it
with the store and works out whether the folder's failures can be seen there (for
``status``, through the heartbeat). The intake takes the last answers. A look that has
not come back after ``HUNG_SECONDS`` is an answer too: that folder does not answer, and
this folder claims nothing until it does; the other folders go on.

A thread stuck on a hung share is left where it is (it holds nothing the daemon needs)
and carries on when the share answers again. An unexpected exception in either thread
is kept in :attr:`Probe.failure` for the intake to raise, which ends the daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from folderseal.core import files
from folderseal.core.config import FolderConfig
from folderseal.core.errors import FileRejected, StateConflict, TransientError
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileState
from folderseal.publish import errorfiles, folders
from folderseal.publish.errorfiles import place_of
from folderseal.publish.failures import Failures
from folderseal.publish.folders import BatchContext, Blocked
from folderseal.store import Store
from folderseal.work import WorkFolder

PROBE_SECONDS = 2.0
HUNG_SECONDS = 10.0
STOP_SECONDS = 1.0  # a stop waits this long; a thread stuck on a hung share is left


@dataclass(frozen=True, slots=True)
class Outputs:
    """What a look at a folder's output folders found."""

    blocked: tuple[Blocked, ...] = ()
    disk_full: str = ""  # the outbox or the state folder under min_free_bytes

    def answering(self, key: str) -> bool:
        """The ``key`` folder answered its last look (there or not)."""
        return all(b.reason != f"{key}_not_answering" for b in self.blocked)


class Probe:
    """The threads that look at one folder's output folders and write its errors folder."""

    def __init__(self, name: str, cfg: FolderConfig, state_dir: Path, store: Store,
                 work: WorkFolder, provider: str, kind: str) -> None:
        self.name = name
        self.cfg = cfg
        self.state_dir = state_dir
        self.connect = store.connect  # each thread of the probe opens its own
        self.node = store.node
        self.work = work
        # For files never batched: no step of the provider's to name (outcome).
        self.rejected_context = BatchContext(batch=None, provider_name=provider,
                                           provider_kind=kind, outcome="", batch_files=0,
                                           history=[])
        self.log = get_logger(folder=name)
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._last: Outputs | None = None                  # none before the first look
        self._looking: tuple[str, Path, float] | None = None  # (key, folder, since)
        self._unseen = ""  # why failures cannot be seen in the errors folder, as last found
        self._stop = threading.Event()
        self._errors_due = threading.Event()  # rejected files wait, or the probe stops
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._guard, args=(loop,), name=f"{what}-{self.name}",
                             daemon=True)
            for what, loop in (("probe", self._look_loop), ("reconcile", self._reconcile_loop))]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._errors_due.set()
        deadline = time.monotonic() + STOP_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def outputs(self) -> Outputs | None:
        """The last answer (None before the first one), in which a folder whose look
        has not come back for HUNG_SECONDS stops claims."""
        with self._lock:
            last, looking = self._last, self._looking
        if looking is None or time.monotonic() - looking[2] < HUNG_SECONDS:
            return last
        key, root, _ = looking
        others = tuple(b for b in (last.blocked if last else ())
                       if not b.reason.startswith(f"{key}_"))
        return Outputs((folders.not_answering(key, root, HUNG_SECONDS), *others),
                       last.disk_full if last else "")

    def failures_unseen(self) -> str:
        """Why this folder's failures cannot be seen in its errors folder ("" if they
        can), as the last reconcile found (the daemon's heartbeat carries it to status)."""
        with self._lock:
            return self._unseen

    def rejected(self) -> None:
        """The intake rejected files: put them into the errors folder soon."""
        self._errors_due.set()

    def sink_rejected(self, failures: Failures) -> None:
        """Put the files the intake rejected into the errors folder, on this thread."""
        for record in failures.store.unfinished_claims(self.name):
            if record.state != FileState.REJECTED:
                continue
            try:
                failures.fail(record, self.rejected_context)
            except FileRejected as exc:
                self.log.error("file.unsinkable", file=record.id, reason=exc.message)
            except TransientError as exc:  # the errors folder is full or gone: next pass
                self.log.warning("file.fail_postponed", file=record.id, reason=str(exc))
            except StateConflict:  # another node took this node's claims over meanwhile
                self.log.warning("claims.lost", file=record.id, reason="a node took this "
                                 "node's claims over while it did not beat (paused or cut off "
                                 "for longer than lease_seconds) and put this file into "
                                 "errors itself; nothing to do here")

    # -- the threads ---------------------------------------------------------------

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - the intake raises it
            self.log.exception("folder.probe_crashed")
            self.failure = exc

    @contextmanager
    def _watching(self, key: str, root: Path) -> Iterator[None]:
        """Mark a look at ``root`` as out, so that one that never comes back shows."""
        with self._lock:
            self._looking = (key, root, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._looking = None

    def _look_loop(self) -> None:
        while not self._stop.is_set():
            blocked = []
            for key in folders.OUTPUT_ROOTS:
                root: Path | None = getattr(self.cfg, key)
                if root is not None:
                    with self._watching(key, root):
                        block = folders.blocked_root(key, root)
                    if block is not None:
                        blocked.append(block)
            with self._watching("outbox", self.cfg.outbox):
                disk_full = self._short_of_space("outbox", self.cfg.outbox)
            disk_full = disk_full or self._short_of_space("state folder", self.state_dir)
            with self._lock:
                self._last = Outputs(tuple(blocked), disk_full)
            self._stop.wait(PROBE_SECONDS)

    def _short_of_space(self, label: str, path: Path) -> str:
        free = files.free_bytes(path)
        if free is None or free >= self.cfg.min_free_bytes:
            return ""
        return (f"the {label} {path} has {free / 1e6:.0f} MB free, under min_free_bytes "
                f"({self.cfg.min_free_bytes / 1e6:.0f} MB)")

    def _reconcile_loop(self) -> None:
        store = self.connect()  # a connection of this thread's own
        try:
            failures = Failures(self.name, self.cfg, self.work, store, self.node)
            reconcile_at = 0.0
            while not self._stop.is_set():
                self._errors_due.clear()
                try:
                    self.sink_rejected(failures)
                    if time.monotonic() >= reconcile_at:
                        try:
                            failures.reconcile()
                        finally:
                            self.find_unseen(store)
                        reconcile_at = time.monotonic() + self.cfg.rescan_seconds
                except (TransientError, OSError) as exc:  # the state folder, a share
                    self.log.warning("folder.reconcile_postponed", reason=str(exc),
                                     retry_in=self.cfg.rescan_seconds)
                    reconcile_at = time.monotonic() + self.cfg.rescan_seconds
                self._errors_due.wait(max(0.0, reconcile_at - time.monotonic()))
        finally:
            store.close()

    def find_unseen(self, store: Store) -> None:
        """Work out why failures cannot be seen in the errors folder (it reads the
        folder's marker, so it runs on this thread, never on the intake thread)."""
        went = [str(place["folder_id"])
                for record in store.files_in_state(self.name, FileState.FAILED)
                if (place := place_of(record)) and place.get("folder_id")]
        unseen = errorfiles.failures_unseen(self.cfg.errors, went)
        with self._lock:
            self._unseen = unseen
