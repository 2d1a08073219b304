"""Intake of one folder: watch, settle, claim, and group claims into batches.

Every call of :meth:`FolderIntake.step` takes the watch hints since the last call,
scans when a scan is due, looks at candidates whose look is due, and claims those
that are ready. Nothing here waits or sleeps: the daemon's loop does that.

Claiming itself (one rename into the work folder) is :mod:`folderseal.intake.claim`; listing
the inbox and looking at its files, :mod:`folderseal.intake.inbox`.

A share that goes away (the inbox vanishes, errors like ESTALE/ENOTCONN, or the
work folder's store marker cannot be read) is an outage: the folder detaches, backs
off, re-attaches, and deletes and forgets nothing. An outbox, errors or archive folder
that is missing, not writable or not answering blocks claims: files wait, visible, in
the inbox (batches already claimed wait for the folder in their own backoff). Those
folders are looked at, and the errors folder written, off this thread
(:mod:`folderseal.publish.probe`): a hung share there must not hold up the other folders. A
file rejected here (empty, not a regular file, stuck) is only recorded ``REJECTED``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from folderseal.core import crashpoints, metrics
from folderseal.core.config import FolderConfig
from folderseal.core.errors import TransientError
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileState
from folderseal.intake import batching as batching
from folderseal.intake import mounts
from folderseal.intake.claim import NOT_REGULAR, Claims, Failure, Outage
from folderseal.intake.fragments import Fragments
from folderseal.intake.ignore import IgnoredTally, NameFilter
from folderseal.intake.inbox import MAX_DEPTH, list_files, look_at
from folderseal.intake.settle import Look, SettleTracker
from folderseal.intake.watch import Hint, Watcher, choose_mode
from folderseal.publish import folders
from folderseal.publish.probe import Outputs, Probe
from folderseal.publish.sink import Sink
from folderseal.store import Store, new_id
from folderseal.work import WorkFolder

MAX_OUTAGE_BACKOFF = 60.0
PAUSE_SECONDS = 5.0  # after the state folder refused a write
CLAIMS_PER_STEP = 100
CLAIM_BYTES_PER_STEP = 1 << 30  # hashing happens on this thread: keep a step short
STALL_SECONDS = 60.0  # a scan this late means the folder is not making progress
LOOKING = "folderseal is looking at the outbox, errors and archive folders"


class FolderIntake:
    def __init__(self, name: str, cfg: FolderConfig, provider: str, store: Store,
                 store_id: str, state_dir: Path, hints: queue.SimpleQueue[Hint],
                 wake: threading.Event, *, kind: str = "local",
                 max_batch_files: int | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.provider = provider
        # The provider may cap a batch below the folder's batch_max_files (Clevver: so
        # one lost answer costs a few files' remote batch, not a hundred's).
        self.max_batch_files = min(cfg.batch_max_files, max_batch_files or cfg.batch_max_files)
        self.store = store
        self.store_id = store_id
        self.filter = NameFilter(cfg.include, cfg.exclude)
        self.tracker = SettleTracker(cfg.settle_seconds, cfg.stuck_after_seconds, name)
        self.fragments = Fragments(name, cfg.settle_seconds, store)
        self.ignored = IgnoredTally()  # as of the last scan
        self.too_deep: list[str] = []  # folders the last scan did not list: too deep
        self.work = WorkFolder(cfg.work_folder, name)
        self.sink = Sink(name, cfg, self.work, store, store.node)
        self.probe = Probe(name, cfg, state_dir, store, self.work, provider, kind)
        self.claims = Claims(name, cfg.inbox, self.work, store, self.tracker,
                             on_rejected=self.probe.rejected)
        self.watcher = Watcher(name, cfg.inbox, cfg.recursive, hints, wake)
        self.inbox = str(cfg.inbox).rstrip("/") + "/"
        self.network = mounts.mount_of(cfg.inbox).is_network
        self.log = get_logger(folder=name)
        self.attached = False
        self.adopted = False
        self.mode = ""
        self.outage = ""
        self.outage_backoff = 1.0
        self.retry_attach_at = 0.0
        self.next_scan_at = 0.0
        self.next_batch_at = 0.0
        self.paused = ""
        self.disk_full = ""          # the outbox or state folder under min_free_bytes
        self.blocked_until = 0.0
        self.outputs: Outputs | None = None       # the probe's last answer
        self.blocked: list[folders.Blocked] = []  # output folders that stop claims
        self.scanned_at = 0.0        # the last scan of the inbox (0: none yet)
        self.claims_to_check = False  # after a scan, once the output folders allow
        self.on_batch: Callable[[], None] = lambda: None

    # -- attach, detach ------------------------------------------------------------

    def attach(self, now: float) -> bool:
        if not self.cfg.inbox.is_dir():
            self._detach(now, f"the inbox {self.cfg.inbox} is not there")
            return False
        if not self.adopted:
            if self.work.owner() is None and \
                    self.store.files_in_state(self.name, FileState.RETRYING):
                # An unfinished retry came from this work folder, so its marker missing is
                # a share not mounted: a new work folder here would take the retry's files.
                self._detach(now, f"the work folder {self.work.path} has no store marker, "
                                  "but a `folderseal retry` of this folder is unfinished: "
                                  "mount the inbox's share")
                return False
            # First contact: make (or check) the work folder. ForeignWorkFolderError
            # ends the daemon with exit 78: continuing could seal files twice.
            self.work.adopt(self.store_id, self.store.job_ids())
            self.fragments.start(now)
            self.adopted = True
        elif not self.work.attached(self.store_id):
            self._detach(now, f"the work folder {self.work.path} is not reachable, or its "
                              "store marker is not ours (a share not mounted?)")
            return False
        mode, why = choose_mode(self.cfg.watch, self.cfg.inbox)
        if mode == "events":
            failure = self.watcher.start_events()
            if failure:
                mode, why = "polling", failure
        self.mode = mode
        self.attached = True
        self.outage = ""
        self.outage_backoff = 1.0
        self.next_scan_at = now
        self.log.info("folder.watching", mode=mode, why=why, inbox=str(self.cfg.inbox))
        return True

    def _detach(self, now: float, reason: str) -> None:
        if self.attached or reason != self.outage:
            self.log.warning("folder.outage", reason=reason,
                             retry_in=round(self.outage_backoff, 1))
        self.watcher.stop()
        self.attached = False
        self.outage = reason
        self.retry_attach_at = now + self.outage_backoff
        self.outage_backoff = min(MAX_OUTAGE_BACKOFF, self.outage_backoff * 2)

    def start(self, now: float) -> None:
        """Attach at start; an inbox out of reach is an outage to wait out, not a failure."""
        try:
            self.attach(now)
        except OSError as exc:
            self._detach(now, f"{exc.strerror or exc}: {exc.filename or self.cfg.inbox}")

    def stop(self) -> None:
        self.watcher.stop()
        self.probe.stop()

    # -- one step ------------------------------------------------------------------

    def step(self, now: float, hints: list[str | None]) -> None:
        self._check_output_folders()
        if now < self.blocked_until:
            return
        self.blocked_until = 0.0
        try:
            if not self.attached and (now < self.retry_attach_at or not self.attach(now)):
                return
            if not self.watcher.alive:
                self.log.warning("folder.watcher_died", action="re-attaching")
                self._detach(now, "the inotify watcher stopped")
                return
            for path in hints:
                if path is None:
                    self.next_scan_at = now
                else:
                    self._hint_path(path, now)
            if now >= self.next_scan_at:
                self.scan(now)
            if self.claims_to_check:
                self._check_claims(now)
            self._look_and_claim(now)
            if now >= self.next_batch_at:
                self.form_batches(now)
        except Outage as exc:
            self._detach(now, str(exc))
        except TransientError as exc:  # the state folder takes no writes: claim later
            if str(exc) != self.paused:
                self.log.warning("folder.paused", reason=str(exc))
            self.paused = str(exc)
            self.blocked_until = now + PAUSE_SECONDS
        except OSError as exc:  # the share or disk in trouble (EIO, ESTALE…): back off
            self._detach(now, f"{exc.strerror or exc}: {exc.filename or self.cfg.inbox}")

    def _check_output_folders(self) -> None:
        """Take the probe's last answer about the output folders (it never waits)."""
        self.probe.start()
        if self.probe.failure is not None:
            raise self.probe.failure
        self.outputs = self.probe.outputs()
        blocked = list(self.outputs.blocked) if self.outputs else []
        self.disk_full = self.outputs.disk_full if self.outputs else ""
        if blocked != self.blocked:
            for block in blocked:
                self.log.warning("folder.blocked", reason=block.reason, advice=block.message)
            if not blocked:
                self.log.info("folder.unblocked", action="claiming again")
                self.probe.rejected()  # any it could not put into errors meanwhile
        self.blocked = blocked

    def _hint_path(self, path: str, now: float) -> None:
        if not path.startswith(self.inbox):
            return
        source = path[len(self.inbox):]
        if (self.cfg.recursive or "/" not in source) and self.filter.wants_file(source):
            self._seen(source, now)

    # -- scan ----------------------------------------------------------------------

    def scan(self, now: float) -> None:
        """List the inbox (the truth; events are hints); unknown claims are registered
        next (:meth:`_check_claims`)."""
        if not self.work.attached(self.store_id):
            raise Outage(f"the store marker in {self.work.path} cannot be read")
        ignored = IgnoredTally()
        too_deep: list[str] = []
        for source in list_files(self.cfg.inbox, self.filter, self.cfg.recursive, ignored,
                                 too_deep):
            self._seen(source, now)
        self.ignored = ignored
        if too_deep != self.too_deep:
            if too_deep:
                self.log.warning("folder.too_deep", folders=too_deep[:5], count=len(too_deep),
                                 advice=f"files more than {MAX_DEPTH} folder levels below "
                                        "the inbox are not sealed: move them higher up")
            self.too_deep = too_deep
        self.claims_to_check = True
        self.scanned_at = now
        interval = self.cfg.poll_interval_seconds if self.mode == "polling" \
            else self.cfg.rescan_seconds
        self.next_scan_at = now + interval

    def _check_claims(self, now: float) -> None:
        """Register claims the store does not know, finish those left half done."""
        self.claims_to_check = False
        if self.claims.register_unknown(now):
            self.next_batch_at = 0.0
        self.claims.sweep()

    def _seen(self, source: str, now: float) -> None:
        if self.tracker.hint(source, now):
            metrics.FILES_SEEN.labels(self.name).inc()

    # -- look, claim ---------------------------------------------------------------

    def _look(self, source: str) -> Look | None:
        return look_at(self.cfg.inbox / source, self.network)

    def _look_and_claim(self, now: float) -> None:
        room = self._room()  # also while blocked: no stale pause stays behind
        due = self.tracker.due(now)
        if not due and not self.tracker.candidates:
            return
        if self.outputs is None or self.blocked:  # claim nothing, not even for errors
            why = self.blocked[0].message if self.blocked else LOOKING
            for source in due:
                self.tracker.wait(source, why, now, held=True)
            return
        wanted: list[tuple[str, tuple[str, str] | None]] = []
        size = 0
        looked: set[str] = set()
        for source in due:
            look = self._look(source)
            looked.add(source)
            if look is not None:
                self.fragments.found(source, now)  # where one was claimed moments ago?
            if look is not None and not look.regular:
                wanted.append((source, NOT_REGULAR))
                continue
            if not self.tracker.looked(source, look, now) or look is None:
                continue
            if room <= 0:
                self.paused = self.paused or (f"{self.cfg.max_in_flight_files} files are in "
                                              "flight (max_in_flight_files)")
                self.tracker.wait(source, self.paused, now, held=True)  # never "stuck"
                continue
            reason = self.tracker.not_ready(source, self.cfg.inbox / source, look, now)
            if reason:
                self.tracker.wait(source, reason, now)
                continue
            wanted.append((source, None))
            room -= 1
            size += look.size
            if len(wanted) >= CLAIMS_PER_STEP or size >= CLAIM_BYTES_PER_STEP:
                break  # the rest stay due: batches form between steps, and jobs start sooner
        taken = {source for source, _ in wanted}
        for candidate in self.tracker.stuck(now, looked):
            if candidate.source in taken:
                continue
            if self._look(candidate.source) is None:
                self.tracker.forget(candidate.source)
                continue
            wanted.append((candidate.source, (
                "stuck", f"it never became ready within {self.cfg.stuck_after_seconds:.0f} s: "
                         f"{candidate.waiting_for or 'it kept changing'}")))
        if wanted:
            self.claim_all(wanted)

    def claim_all(self, wanted: list[tuple[str, Failure | None]]) -> list[str | None]:
        ids = self.claims.claim_all(wanted)
        now = self.store.clock()
        for (source, _), claim_id in zip(wanted, ids, strict=True):
            if claim_id is not None:
                self.fragments.claimed(source, claim_id, now)
        claimed = sum(1 for i in ids if i)
        if claimed:
            metrics.FILES_CLAIMED.labels(self.name).inc(claimed)
            self.next_batch_at = 0.0
        return ids

    def _room(self) -> int:
        """How many more files may be claimed now (0 with the reason in ``paused``)."""
        in_flight = self.store.count_in_flight(self.name)
        if in_flight >= self.cfg.max_in_flight_files:
            self.paused = (f"{in_flight} files are in flight (max_in_flight_files); waiting "
                           "for the provider")
            return 0
        self.paused = self.disk_full  # the probe's answer: no share is touched here
        return 0 if self.disk_full else self.cfg.max_in_flight_files - in_flight

    def claim_now(self, source: str) -> tuple[str | None, str]:
        """Claim a named file without waiting for it to settle (``folderseal sign``).

        Returns the claim id, or None and the reason it was not claimed.
        """
        now = self.store.clock()
        blocked = folders.blocked(self.cfg)  # no main loop to hold up here
        if blocked:
            return None, blocked[0].message
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
        claim_id = self.claim_all([(source, None if look.regular else NOT_REGULAR)])[0]
        if claim_id is None:
            candidate = self.tracker.candidates.pop(source, None)
            return None, candidate.waiting_for if candidate else "it is gone"
        return claim_id, ""

    # -- batches -------------------------------------------------------------------

    def form_batches(self, now: float) -> list[str]:
        """Group claimed files into batches that are due; returns the new batch ids."""
        claimed = [r for r in self.store.files_in_state(self.name, FileState.CLAIMED)
                   if r.sha256 is not None]
        if self.cfg.duplicates == "skip":
            claimed = [r for r in claimed if not self._skip_duplicate(r)]
        limits = batching.Limits(self.max_batch_files, int(self.cfg.batch_max_bytes),
                                 self.cfg.batch_max_wait_seconds)
        created = []
        while chosen := batching.next_batch(claimed, limits, now):
            claimed = claimed[len(chosen):]
            job_id = new_id()
            entries = [(r.id, batching.entry_name(i, r.source))
                       for i, r in enumerate(chosen, start=1)]
            self.store.create_job(job_id=job_id, folder=self.name, provider=self.provider,
                                  entries=entries)
            crashpoints.reached("state:BATCHED")
            batching.move_into_batch(self.work, job_id, self.provider,
                                     self.store.files_of_job(job_id))
            self.log.info("batch.batched", batch=job_id, files=len(chosen),
                          bytes=sum(r.size for r in chosen))
            created.append(job_id)
        if created:
            self.on_batch()
        oldest = min((r.claimed_at for r in claimed), default=None)
        self.next_batch_at = float("inf") if oldest is None \
            else oldest + self.cfg.batch_max_wait_seconds
        return created

    def sink_rejected(self) -> None:
        """Put the files this folder rejected into its errors folder now, on this thread
        (``folderseal sign``, which has no main loop to hold up)."""
        self.probe.sink_rejected(self.sink.failures)

    def _skip_duplicate(self, record: Any) -> bool:
        twin = self.store.delivered_twin(record)
        if twin is None:
            return False
        self.claims.fail(record.id, "duplicate",
                         f"the same content (sha256 {record.sha256[:12]}…) was already "
                         f"delivered from {twin.source_text!r} (duplicates = \"skip\")")
        return True

    # -- status --------------------------------------------------------------------

    @property
    def first_scan_done(self) -> bool:
        """Scanned once, or out of reach (a share down at boot does not hold READY back)."""
        return self.scanned_at > 0 or not self.attached

    def health(self, now: float) -> str:
        """Why this folder's watcher is not making progress ("" when it is). Backing off
        from an outage, or pausing while the state folder takes no writes, is progress:
        the folder waits as it should (a restart would not help)."""
        if self.attached and self.mode == "events" and not self.watcher.alive:
            return f"folder {self.name}: the inotify watcher stopped"
        if self.attached and not self.blocked_until and now - self.next_scan_at > STALL_SECONDS:
            return f"folder {self.name}: its scan is {now - self.next_scan_at:.0f} s overdue"
        return ""

    def notes(self, now: float) -> dict[str, Any]:
        waiting = self.tracker.waiting()
        return {
            "mode": self.mode, "attached": self.attached, "outage": self.outage,
            "paused": self.paused, "disk_full": self.disk_full, "problem": self.health(now),
            "blocked": [{"reason": b.reason, "message": b.message} for b in self.blocked],
            "candidates": len(waiting), "ignored": self.ignored.report(),
            "failures_unseen": self.probe.failures_unseen(),
            "waiting": [{"source": c.source, "since": c.first_seen,
                         "why": c.waiting_for or "settling"} for c in waiting[:20]],
        }

    def next_wakeup(self) -> float:
        if self.blocked_until:
            return self.blocked_until
        if not self.attached:
            return self.retry_attach_at
        times = [self.next_scan_at, self.next_batch_at]
        look = self.tracker.next_look()
        if look is not None:
            times.append(look)
        return min(times)
