"""Intake of one folder: the driver that takes a file from the inbox into a batch.

Every call of :meth:`FolderIntake.step` follows a file's way in order:

1. is the folder attached (:mod:`~folderseal.intake.attach`: inbox and work folder in
   reach, or backing off from an outage), and may it claim
   (:mod:`~folderseal.intake.limits`: output folders, files in flight, disk space)?
2. which files are there (:mod:`~folderseal.intake.scanning`: watch hints, and a scan
   when one is due);
3. which of them are ready (:mod:`~folderseal.intake.settle`: looks that are due, the
   content check, stuck files);
4. claim those (:mod:`~folderseal.intake.claim`: one rename each, recorded in the store);
5. group claims into batches when one is due (:mod:`~folderseal.intake.batching`).

Nothing here waits or sleeps: the folder's loop does that (service/folderloop.py). The
daemon gives each folder its parts: the work folder, the probe of its output folders
(which also puts rejected files into the errors folder, off this thread) and what to do
with a rejected claim.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from folderseal.core import mounts
from folderseal.core.config import FolderConfig
from folderseal.core.errors import TransientError
from folderseal.core.logs import get as get_logger
from folderseal.intake.attach import Attachment, outage_reason
from folderseal.intake.batching import Batches
from folderseal.intake.claim import NOT_REGULAR, Claims, Failure, Outage, Reject
from folderseal.intake.fragments import Fragments
from folderseal.intake.inbox import look_at
from folderseal.intake.limits import ClaimLimits
from folderseal.intake.scanning import Scanner
from folderseal.intake.settle import Look, SettleTracker
from folderseal.intake.watch import Hint, Watcher
from folderseal.publish.probe import Probe
from folderseal.store import Store
from folderseal.work import WorkFolder

CLAIMS_PER_STEP = 100
LOOKS_PER_STEP = 1000  # a backlog is looked at a thousand files a step, between claims
LOOK_SECONDS_PER_STEP = 2.0  # and for this long at most (a slow share): steps stay short
CLAIM_BYTES_PER_STEP = 256 << 20  # files under 8 MiB are hashed on this thread


class FolderIntake:
    """One folder's way from inbox to batch, a step at a time on its thread (service/folderloop.py).

    The probe it is given runs with it: started at its first step, stopped with it.
    """

    def __init__(self, name: str, cfg: FolderConfig, store: Store, work: WorkFolder,
                 probe: Probe, hints: queue.SimpleQueue[Hint], wake: threading.Event, *,
                 provider: str, reject: Reject, max_batch_files: int | None = None,
                 on_batch: Callable[[], None] = lambda: None,
                 node_alive: Callable[[str], bool] = lambda node: False,
                 alive_seconds: float = 0.0) -> None:
        self.name = name
        self.cfg = cfg
        self.store = store
        self.work = work
        self.probe = probe
        self.on_batch = on_batch  # new batches are there for the batch threads
        self.tracker = SettleTracker(cfg.settle_seconds, cfg.stuck_after_seconds, name)
        self.fragments = Fragments(name, cfg.settle_seconds, store)
        self.watcher = Watcher(name, cfg.inbox, cfg.recursive, hints, wake)
        self.attachment = Attachment(name, cfg, store, work, self.watcher, self.fragments,
                                     node_alive, alive_seconds)
        self.limits = ClaimLimits(name, cfg, store, probe)
        self.scanner = Scanner(name, cfg, self.tracker)
        self.claims = Claims(name, cfg.inbox, work, store, self.tracker, self.fragments,
                             reject)
        self.batches = Batches(name, cfg, provider, store, work, self.claims.fail,
                               max_batch_files=max_batch_files)
        self.network = mounts.mount_of(cfg.inbox).is_network
        self.claims_to_check = False  # after a scan, once the output folders allow
        self._hashed = threading.Event()  # the hasher recorded a hash: batches may form
        self.held_back = ""  # why no file may be claimed now (max_in_flight_files, disk)
        self.log = get_logger(folder=name)

    # -- attach, start, stop -------------------------------------------------------

    @property
    def mode(self) -> str:
        """How the inbox is watched: "events" or "polling" ("" before it is attached)."""
        return self.attachment.mode

    def attach(self, now: float) -> bool:
        """Attach (see :class:`Attachment`), and scan at once if that worked."""
        if not self.attachment.attach(now):
            return False
        self.scanner.next_at = now
        return True

    def start(self, now: float) -> None:
        """Attach at start; an inbox out of reach is an outage to wait out, not a failure."""
        try:
            self.attach(now)
        except OSError as exc:
            self.attachment.detach(now, outage_reason(exc, self.cfg))

    def stop(self) -> None:
        self.watcher.stop()
        self.probe.stop()

    # -- one step ------------------------------------------------------------------

    def step(self, now: float, hints: list[str | None]) -> None:
        self.limits.check_output_folders()
        if self.limits.pausing(now):
            return
        attachment = self.attachment
        try:
            if not attachment.attached and (now < attachment.retry_at or not self.attach(now)):
                return
            if attachment.lost_watcher(now):
                return
            for path in hints:
                self.scanner.hint(path, now)
            if now >= self.scanner.next_at:
                self.scan(now)
            if self.claims_to_check:
                # Take dead nodes' claims, register claims the store does not know,
                # finish those left half done.
                self.claims_to_check = False
                self.attachment.adopt_dead_claims()
                if self.claims.register_unknown(now):
                    self.batches.next_at = 0.0
                self.claims.sweep()
            self._look_and_claim(now)
            if self._hashed.is_set():
                self._hashed.clear()
                self.batches.next_at = 0.0
            if now >= self.batches.next_at:
                self.form_batches(now)
        except Outage as exc:
            attachment.detach(now, str(exc))
        except TransientError as exc:  # the state folder takes no writes: claim later
            self.limits.pause(str(exc), now)
        except OSError as exc:  # the share or disk in trouble (EIO, ESTALE…): back off
            attachment.detach(now, outage_reason(exc, self.cfg))

    def scan(self, now: float) -> None:
        """List the inbox (the truth; events are hints); unknown claims are registered
        next, once the output folders allow claims."""
        if not self.work.attached(self.attachment.store_id):
            raise Outage(f"the store marker in {self.work.path} cannot be read")
        self.scanner.scan(now, polling=self.mode == "polling")
        self.claims_to_check = True

    # -- look, claim ---------------------------------------------------------------

    def _look(self, source: str) -> Look | None:
        return look_at(self.cfg.inbox / source, self.network)

    def _look_and_claim(self, now: float) -> None:
        room = self.limits.room()  # also while blocked: no stale pause stays behind
        # No room: nothing is looked at, so a backlog waiting for room is not stat'ed
        # again and again; its files wait with this reason (never "stuck").
        self.held_back = self.limits.paused if room <= 0 else ""
        if room <= 0:
            return
        due = self.tracker.due(now, LOOKS_PER_STEP)
        if not due:
            return
        closed = self.limits.closed()
        if closed:  # claim nothing, not even for errors
            for source in due:
                self.tracker.wait(source, closed, now, held=True)
            return
        wanted: list[tuple[str, Failure | None]] = []
        size = 0
        looked: set[str] = set()
        until = time.monotonic() + LOOK_SECONDS_PER_STEP
        for source in due:
            if time.monotonic() > until:
                break  # the rest stay due: a slow share must not make a step look hung
            look = self._look(source)
            looked.add(source)
            if look is not None:
                self.fragments.found(source, now)  # where one was claimed moments ago?
            if look is not None and not look.regular:
                wanted.append((source, NOT_REGULAR))
                continue
            if not self.tracker.looked(source, look, now) or look is None:
                continue
            reason = self.tracker.not_ready(source, self.cfg.inbox / source, look, now)
            if reason:
                self.tracker.wait(source, reason, now)
                continue
            wanted.append((source, None))
            room -= 1
            size += look.size
            if len(wanted) >= CLAIMS_PER_STEP or size >= CLAIM_BYTES_PER_STEP or room <= 0:
                break  # the rest stay due: batches form between steps, and batches start sooner
        taken = {source for source, _ in wanted}
        for candidate in self.tracker.stuck(now, looked):
            if candidate.source in taken:
                continue
            if self._look(candidate.source) is None:
                self.tracker.forget(candidate.source)
                continue
            wanted.append((candidate.source, ("stuck", self.tracker.why_stuck(candidate))))
        if wanted and any(self.claims.claim_all(wanted)):
            self.batches.next_at = 0.0

    def hash_recorded(self) -> None:
        """The folder's hasher recorded a claim's hash: batches form at the next step."""
        self._hashed.set()
        self.watcher.wake.set()

    def claim_now(self, source: str) -> tuple[str | None, str]:
        """Claim a named file without waiting for it to settle (``folderseal sign``).

        Returns the claim id, or None and the reason it was not claimed.
        """
        now = self.store.clock()
        closed = self.limits.closed_now()  # no intake thread to hold up here
        if closed:
            return None, closed
        look = self._look(source)
        if look is None:
            return None, "no such file in the inbox"
        self.tracker.hint(source, now)
        if look.regular:
            reason = self.tracker.not_ready(source, self.cfg.inbox / source, look,
                                            float("inf"))  # named: no waiting
            if reason:
                self.tracker.forget(source)
                return None, reason
        [claim_id] = self.claims.claim_all([(source, None if look.regular else NOT_REGULAR)])
        if claim_id is None:
            candidate = self.tracker.forget(source)
            return None, candidate.waiting_for if candidate else "it is gone"
        self.batches.next_at = 0.0
        return claim_id, ""

    # -- batches -------------------------------------------------------------------

    def form_batches(self, now: float) -> list[str]:
        """Group claimed files into batches that are due; returns the new batch ids."""
        created = self.batches.form(now)
        if created:
            self.on_batch()
        return created

    # -- status --------------------------------------------------------------------

    @property
    def first_scan_done(self) -> bool:
        """Scanned once, or out of reach (a share down at boot does not hold READY back)."""
        return self.scanner.scanned_at > 0 or not self.attachment.attached

    def health(self, now: float) -> str:
        """Why this folder is not making progress ("" when it is). Pausing while the state
        folder takes no writes is progress: the folder waits as it should."""
        overdue = 0.0 if self.limits.paused_until else now - self.scanner.next_at
        return self.attachment.health(overdue)

    def notes(self, now: float) -> dict[str, Any]:
        waiting = self.tracker.waiting(20)
        limits = self.limits
        return {
            "mode": self.mode, "attached": self.attachment.attached,
            "outage": self.attachment.outage, "paused": limits.paused,
            "disk_full": limits.disk_full, "problem": self.health(now),
            "blocked": [{"reason": b.reason, "message": b.message} for b in limits.blocked],
            "candidates": self.tracker.count(), "ignored": self.scanner.ignored.report(),
            "failures_unseen": self.probe.failures_unseen(),
            "waiting": [{"source": c.source, "since": c.first_seen,
                         "why": c.waiting_for or self.held_back or "settling"}
                        for c in waiting],
        }

    def next_wakeup(self) -> float:
        if self.limits.paused_until:
            return self.limits.paused_until
        if not self.attachment.attached:
            return self.attachment.retry_at
        times = [self.scanner.next_at, self.batches.next_at]
        look = None if self.held_back else self.tracker.next_look()  # room: within a second
        if look is not None:
            times.append(look)
        return min(times)
