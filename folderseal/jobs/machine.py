"""The job state machine: every batch, driven through its provider's lifecycle.

This is the one place that knows what each state means and which step follows it.
Each step runs under the job's lease, ends in a guarded transition (so a restart
resumes with the next step, as in docs/design.md's crash table), and is one of:

* done: the job moves on and the next step runs at once;
* waiting: the provider is still working; the job is released until its next poll;
* transient failure: the job is released with exponential backoff and jitter, its
  attempt count kept in the store across restarts;
* permanent failure: the job is FAILED and each of its files goes to errors with
  the reason (files of a batch that may have been signed are never re-batched).

What a state means for the files (may they be sent again?) is :mod:`folderseal.jobs.lifecycle`'s
table; what a provider does in each step, and how it proves an upload complete, is the
provider's (:mod:`folderseal.providers`). A step before accept that finds its remote batch
may not hold exactly this batch abandons it (never started) and starts a new one; such
abandons are counted by cause: answers the network lost (no limit but a safety cap) and
a provider showing something other than what was sent (``MAX_RECREATES``).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from folderseal.core import crashpoints, metrics
from folderseal.core.errors import NotSent, ProviderError, StoreError, Throttled, TransientError
from folderseal.core.logs import get as get_logger
from folderseal.core.model import DocumentResult, FileState, JobRecord, JobState
from folderseal.intake import batching as batching
from folderseal.jobs import lifecycle
from folderseal.providers import (
    OUTCOME_UNKNOWN,
    Abandon,
    BatchView,
    Document,
    Provider,
    Remote,
    RemoteDocument,
    RemoteStatus,
    ask_status,
)
from folderseal.publish.folders import JobContext
from folderseal.publish.sink import Sink
from folderseal.store import Store
from folderseal.work import WorkFolder

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
# Remote batches a batch may abandon because the provider showed something other than
# what was sent, before the batch fails (remote_mismatch).
MAX_RECREATES = 3
# Abandons because an answer was lost are the network's fault and use up no limit: past
# this many, each further one is followed by a pause (the batch's backoff, which grows),
# so a batch does not feed an unreliable provider at full speed; its files never fail
# for it.
MAX_LOST_ANSWERS = 20


def backoff(attempts: int) -> float:
    """Seconds to wait before attempt ``attempts + 1``: doubling, capped, with jitter."""
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0)


class BatchLedger:
    """The :class:`~folderseal.providers.Ledger` a step is handed: what the provider
    reports during a step is recorded at once, durably, before the step goes on."""

    def __init__(self, store: Store, work: WorkFolder, job: JobRecord, stop: threading.Event,
                 changed: Callable[[], None]) -> None:
        self.store = store
        self.work = work
        self.job = job
        self.stop = stop
        self.changed = changed  # the batch's documents changed: read them afresh

    def begin(self, documents: list[Document]) -> list[int]:
        counts = self.store.begin_attempts(self.job, [d.file_id for d in documents])
        crashpoints.reached("attempt")
        return counts

    def forgive(self, documents: list[Document]) -> None:
        self.store.forgive_attempts(self.job, [d.file_id for d in documents])

    def stopping(self) -> bool:
        return self.stop.is_set()

    def sending(self, document: Document, remote_id: str) -> None:
        self._note(document, RemoteDocument(batch=remote_id, id=None))

    def answered(self, document: Document, remote: RemoteDocument) -> None:
        self._note(document, remote)

    def _note(self, document: Document, remote: RemoteDocument) -> None:
        """Beside the batch in the work folder first (``recover`` reads it if the store is
        lost), then in the store; both before the step goes on."""
        note = remote.to_json()
        self.work.note_document(self.job.id, document.file_id, note)
        self.store.note_remote_document(self.job.id, document.file_id, note)
        self.changed()

    def reject(self, document: Document, code: str, message: str,
               block: dict[str, Any] | None = None) -> None:
        """The file leaves the batch as failed; it goes to errors with the batch. Marked
        in the manifest first, so that after a lost store ``recover`` does not count it
        as part of the batch again."""
        self.work.note_rejected(self.job.id, document.file_id, code, message)
        self.store.set_file_result(document.file_id, FileState.BATCHED, DocumentResult(
            entry=document.entry, error_code=code, error_message=message,
            provider_block=block or {}), job_id=self.job.id)
        self.changed()

    def publishing(self, key: str) -> None:
        self.work.note_published(self.job.id, key)
        self.store.set_publish_key(self.job, key)
        self.changed()

    def created(self, remote_id: str) -> None:
        self.work.note_remote_id(self.job.id, remote_id)
        self.store.set_remote_id(self.job, remote_id)
        self.changed()


class Busy:
    """The jobs the threads of this process are working on; used as its own lock.

    Acquiring skips them, so two threads never work on one job, even when a long step
    let its lease lapse.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: set[str] = set()

    def __enter__(self) -> Busy:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def jobs(self) -> frozenset[str]:
        return frozenset(self._jobs)

    def add(self, job_id: str) -> None:
        self._jobs.add(job_id)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.discard(job_id)


class Manager:
    """Advances due jobs; one per job thread (each thread has its own store connection)."""

    def __init__(self, store: Store, providers: dict[str, Provider], sinks: dict[str, Sink],
                 works: dict[str, WorkFolder], state_dir: Path, stop: threading.Event,
                 delay: Callable[[int], float] = backoff, busy: Busy | None = None) -> None:
        self.store = store
        self.busy = busy or Busy()
        self.providers = providers
        self.sinks = sinks
        self.works = works
        self.state_dir = state_dir
        self.stop = stop
        self.delay = delay
        self.log = get_logger()
        self.store_id = store.store_id
        self._views: dict[str, BatchView] = {}
        self._steps: dict[JobState, Callable[[JobRecord, Provider], JobRecord | None]] = {
            JobState.BATCHED: self._create,
            JobState.CREATED: self._upload,
            JobState.UPLOADED: self._accept,
            JobState.ACCEPTING: self._accept_again,
            JobState.ACCEPTED: self._poll,
            JobState.CLOSED: self._download,
            JobState.DOWNLOADED: self._deliver,
            JobState.DELIVERED: self._clean,
            JobState.FAILED: self._sink_failures,
        }

    def run_once(self) -> bool:
        """Advance the job that is due first; False if none is due."""
        with self.busy:
            job = self.store.acquire_job(self.busy.jobs())
            if job is None:
                return False
            self.busy.add(job.id)
        try:
            self.advance(job)
        finally:
            self.busy.discard(job.id)
        return True

    def advance(self, job: JobRecord) -> None:
        """Run steps of one job until it waits, finishes, fails, or the daemon stops."""
        provider = self.providers[job.provider]
        log = self.log.bind(batch=job.id, folder=job.folder, provider=job.provider)
        current: JobRecord | None = job
        self._views.clear()
        try:
            while current is not None:
                if self.stop.is_set():
                    self.store.release(current, self.store.clock())
                    return
                step = self._steps.get(current.state)
                if step is None:  # CLEANED
                    self.store.release(current, None)
                    return
                self._require_work_folder(current)
                job_id = current.id
                try:
                    current = step(current, provider)
                except Abandon as exc:
                    current = self._abandoned(job_id, provider, exc)
        except Throttled as exc:  # its turn comes later: not a failure
            self._release_now(job.id, exc.retry_after or 1.0, log)
        except TransientError as exc:
            self._postpone(job.id, "transient", str(exc), self._delay(exc, provider), log)
        except ProviderError as exc:
            self._fail(job.id, exc.code, exc.message, log)
        except OSError as exc:
            # The disk or a folder is in trouble (full, read-only, gone): wait and retry.
            self._postpone(job.id, "io", f"{exc.strerror or exc}: {exc.filename or ''}",
                           self._delay(None, provider), log)
        except StoreError as exc:  # LeaseLost, StateConflict: someone else has it now
            log.warning("batch.lease_lost", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - one batch's surprise must not stop all
            # A step that fails in a way nobody foresaw (a provider's odd answer, a bug):
            # the batch waits with backoff, loudly, and status shows why; restarting the
            # daemon would only hit the same batch again and stop every folder with it.
            log.exception("batch.step_crashed", state=job.state)
            self._postpone(job.id, "internal", f"{type(exc).__name__}: {exc}",
                           self._delay(None, provider), log)

    def _require_work_folder(self, job: JobRecord) -> None:
        """Every step reads, moves or removes files in the work folder: never while the
        inbox share is away, where its mount point is an empty folder and a missing
        original would look removed already."""
        if not self.works[job.folder].attached(self.store_id):
            raise TransientError(f"the work folder of folder {job.folder!r} cannot be "
                                 "reached (is the inbox share mounted?); the batch waits")

    def _release_now(self, job_id: str, seconds: float, log: Any) -> None:
        """Release the job (in whatever state it is now) for ``seconds``."""
        current = self.store.job(job_id)
        if current is None:
            return
        try:
            self.store.release(current, self.store.clock() + seconds)
        except (StoreError, TransientError) as exc:
            log.warning("batch.release_failed", reason=str(exc), retry="when its lease runs out")

    def _postpone(self, job_id: str, code: str, message: str,
                  delay: Callable[[int], float], log: Any) -> None:
        try:
            current = self.store.job(job_id)
            assert current is not None
            attempts, at = self.store.postpone(current, delay, code, message)
        except StoreError as exc:
            log.warning("batch.lease_lost", reason=str(exc))
            return
        except TransientError as exc:  # the state folder itself takes no writes
            log.warning("batch.postpone_failed", reason=str(exc),
                        retry="when its lease runs out")
            return
        metrics.RETRIES.labels(current.folder, current.provider, code).inc()
        log.warning("batch.postponed", state=current.state, reason=message, attempts=attempts,
                    retry_in=round(at - self.store.clock(), 1))

    def _delay(self, exc: TransientError | None, provider: Provider) -> Callable[[int], float]:
        """The provider's Retry-After when it gave one, else backoff up to the provider's
        retry_max_seconds."""
        retry_after = exc.retry_after if exc is not None else None
        if retry_after is not None:
            return lambda _attempts: retry_after
        cap = provider.retry_max_seconds
        return lambda attempts: min(self.delay(attempts), cap)

    # -- helpers -------------------------------------------------------------------

    def _view(self, job: JobRecord, provider: Provider) -> BatchView:
        """The batch as the provider sees it: its files still waiting for the provider,
        each with the provider's latest answer for it; read once per :meth:`advance` (and
        afresh after a step that changed them)."""
        cached = self._views.get(job.id)
        if cached is not None:
            return cached
        work = self.works[job.folder]
        records = {r.id: r for r in self.store.files_of_job(job.id)
                   if r.state == FileState.BATCHED}
        notes = self.store.remote_documents(job.id)
        documents = tuple(
            Document(entry=r.entry or "", file_id=r.id, sha256=r.sha256 or "", size=r.size,
                     dev=r.dev, ino=r.ino, attempts=r.attempts,
                     remote=RemoteDocument.from_json(notes.get(r.id)))
            for r in records.values())
        prepared = (job.package_sha256, job.package_bytes) \
            if job.package_sha256 and job.package_bytes is not None else None
        view = BatchView(id=job.id, folder=job.folder, documents=documents,
                         files_dir=work.batch_dir(job.id),
                         package=self.state_dir / "packages" / f"{job.id}.zip",
                         staging=self.state_dir / "downloads" / job.id,
                         open_document=lambda d: work.open_file(records[d.file_id]),
                         prepared=prepared, published=job.publish_key or "")
        self._views[job.id] = view
        return view

    def _ledger(self, job: JobRecord) -> BatchLedger:
        def changed() -> None:
            self._views.pop(job.id, None)

        return BatchLedger(self.store, self.works[job.folder], job, self.stop, changed)

    def _move(self, job: JobRecord, to_state: JobState, remote_id: str | None = None,
              detail: str | None = None) -> JobRecord:
        self.store.transition(job, to_state, detail=detail, remote_id=remote_id)
        return self._moved(job, to_state)

    def _moved(self, job: JobRecord, to_state: JobState) -> JobRecord:
        """After a committed transition: log it, offer the crash point, reload the job."""
        moved = self.store.job(job.id)
        assert moved is not None
        self.log.info(f"batch.{to_state.lower()}", batch=job.id, folder=job.folder,
                      provider=job.provider, remote=moved.remote_id)
        crashpoints.reached(f"state:{to_state}")
        return moved

    def _fail(self, job_id: str, code: str, message: str, log: Any) -> None:
        """The batch failed for good: FAILED, and each of its files to errors."""
        current = self.store.job(job_id)
        assert current is not None
        steps = self.providers[current.provider].steps
        if lifecycle.may_have_run(current.state, steps) and "may have been" not in message:
            # Whatever refused, the provider may have run the batch: the operator must
            # know before dropping its files again.
            message = (f"{message}; its files may have been {steps.outcome}: check with "
                       "the provider; `folderseal retry` asks the same batch again")
        try:
            self.store.fail_job(current, code, message)
        except StoreError as exc:
            log.warning("batch.lease_lost", reason=str(exc))
            return
        log.error("batch.failed", code=code, reason=message, state=current.state)
        failed = self.store.job(job_id)
        assert failed is not None
        self._sink_failures(failed, self.providers[failed.provider])

    # -- the steps -----------------------------------------------------------------

    def _create(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """BATCHED: finish moving files in, let the provider prepare what goes up (SEAL:
        its package), create the remote batch."""
        work = self.works[job.folder]
        batching.move_into_batch(work, job.id, job.provider, self.store.files_of_job(job.id))
        if (caught := self._catch_up(job, provider)) is not None:
            return caught
        ledger = self._ledger(job)
        made = provider.prepare(self._view(job, provider), ledger)
        view = self._view(job, provider)  # read afresh: prepare may have rejected files
        if not view.documents:
            return self._nothing_left(job, provider, view)
        if made is not None and made != view.prepared:
            self.store.set_package(job, *made)
        remote_id = provider.create(view, ledger)
        self._note_remote_id(job, provider, remote_id)
        return self._move(job, JobState.CREATED, remote_id=remote_id or None)

    def _note_remote_id(self, job: JobRecord, provider: Provider, remote_id: str) -> None:
        """Keep a remote batch id beside the batch before anything is sent there: with it,
        ``folderseal recover`` can ask the provider about the batch if the store is lost.
        (A provider whose accept creates the batch has none yet: "".)"""
        if provider.steps.remote and remote_id:
            self.works[job.folder].note_remote_id(job.id, remote_id)

    def _upload(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """CREATED: send the documents. After any doubt the remote status decides: the
        provider proves it holds the upload → uploaded; nothing sent there yet, or sent
        document by document with each send noted (the provider goes on where it stopped,
        and abandons on a send in doubt) → upload; sent in one piece and not showing →
        wait out the grace, then abandon this remote batch (never started) for a new one.
        One remote batch never gets the same upload twice."""
        if (caught := self._catch_up(job, provider)) is not None:
            return caught
        view = self._view(job, provider)
        remote_id = job.remote_id or ""
        if not view.documents:
            return self._nothing_left(job, provider, view)
        status = ask_status(provider, view, remote_id)
        if status.state in lifecycle.STARTED:
            return self._found_accepted(job, status)
        if provider.holds_upload(view, status):
            return self._move(job, JobState.UPLOADED, detail="found uploaded")
        sent = self.store.upload_sent_at(job.id, remote_id)
        noted = any(d.remote is not None and d.remote.batch == remote_id
                    for d in view.documents)
        empty = status.state in lifecycle.OPEN and not status.documents
        if status.state in lifecycle.OPEN and ((empty and sent is None) or noted):
            if sent is None:
                self.store.note_upload(job, remote_id)  # durable before the upload goes out
            provider.upload(view, remote_id, self._ledger(job))
            self._views.pop(job.id, None)  # the provider's answers changed the documents
            return self._move(job, JobState.UPLOADED)
        if empty and sent is not None and self._within_grace(sent, provider):
            return self._wait(job, provider)  # it may still be unpacking what was sent
        return self._abandon(job, provider, view, f"remote batch is {status.state} with "
                             f"{len(status.documents)} documents"
                             f"{' after an upload was sent' if sent else ''}",
                             lost_answer=empty)

    def _within_grace(self, since: float, provider: Provider) -> bool:
        """True while something sent may not show in the provider's status yet."""
        return self.store.clock() - since < provider.status_grace

    def _wait(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """Release the job until the provider's next poll (the step is asked again)."""
        self.store.release(job, self.store.clock() + max(provider.poll_interval, 1.0))
        return None

    def _found_accepted(self, job: JobRecord, status: RemoteStatus) -> JobRecord:
        """Before accept, the remote batch shows started: the store is behind (restored
        from a copy, or it lost its last writes). Its files may have run: go on from
        ACCEPTED, never abandon it and submit them again."""
        self.log.warning("batch.store_behind", batch=job.id, remote=job.remote_id,
                         state=job.state, remote_state=str(status.state))
        return self._move(job, JobState.ACCEPTED, detail=f"found {status.state} before "
                          "accept: the store was behind")

    def _catch_up(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """Before anything is sent: a remote batch the batch's manifest names but the store
        does not (a store restored from a copy, or one that lost its last writes) decides
        first, so that files it may have run are never submitted again. Started → on from
        ACCEPTED; holding the upload → ACCEPTING (its status decides on accept); created
        or uploaded in part (never started) → deleted, and the step goes on."""
        if not provider.steps.remote:
            return None
        ids = self.works[job.folder].remote_ids(job.id)
        if not ids or ids[-1] == job.remote_id:
            return None
        newer, view = ids[-1], self._noted_in_manifest(job, self._view(job, provider))
        status = ask_status(provider, view, newer)
        self.log.warning("batch.store_behind", batch=job.id, remote=newer,
                         stored=job.remote_id, remote_state=str(status.state))
        if status.state in lifecycle.STARTED:
            return self._move(job, JobState.ACCEPTED, remote_id=newer,
                              detail=f"found accepted: {newer}")
        if provider.steps.accept_creates:
            # Its accept created it: it was accepted, whatever its status shows now.
            return self._move(job, JobState.ACCEPTING, remote_id=newer,
                              detail=f"found created: {newer}")
        if provider.holds_upload(view, status):
            # Its start may have been sent and not shown yet: ACCEPTING, whose grace
            # decides; the store learns the answers the manifest kept.
            for document in view.documents:
                if document.remote is not None:
                    self.store.note_remote_document(job.id, document.file_id,
                                                    document.remote.to_json())
            self._views.pop(job.id, None)
            return self._move(job, JobState.ACCEPTING, remote_id=newer,
                              detail=f"found uploaded: {newer}")
        if status.state != Remote.GONE:
            provider.delete(view, newer)
        return None

    def _noted_in_manifest(self, job: JobRecord, view: BatchView) -> BatchView:
        """The view with each document's answer as the manifest keeps it (written before
        the store's): what a store that lost its last writes no longer knows."""
        notes = self.works[job.folder].document_notes(job.id)
        return dataclasses.replace(view, documents=tuple(
            dataclasses.replace(d, remote=RemoteDocument.from_json(notes.get(d.file_id))
                                or d.remote) for d in view.documents))

    def _abandoned(self, job_id: str, provider: Provider, exc: Abandon) -> JobRecord:
        """A step raised Abandon: this remote batch may not hold exactly what was sent."""
        job = self.store.job(job_id)
        assert job is not None
        if lifecycle.past_no_return(job.state):
            raise exc  # accept may have been sent: never abandoned (a provider's bug)
        return self._abandon(job, provider, self._view(job, provider), exc.why,
                             lost_answer=exc.lost_answer)

    def _abandon(self, job: JobRecord, provider: Provider, view: BatchView, why: str, *,
                 lost_answer: bool) -> JobRecord:
        """Abandon a remote batch that was never started and start a new one, counting the
        abandon by its cause. After MAX_RECREATES mismatches the batch fails (nothing was
        accepted, so retry submits it afresh); past MAX_LOST_ANSWERS lost answers each
        abandon is followed by the batch's backoff."""
        old = job.remote_id or ""
        lost, mismatched = self.store.abandons(job.id)
        if not lost_answer and mismatched >= MAX_RECREATES:
            raise ProviderError(
                "remote_mismatch",
                f"the provider's batch did not match what was uploaded {MAX_RECREATES + 1} "
                f"times ({why}); nothing was accepted: ask the provider's administrator, "
                "then `folderseal retry` submits the files afresh",
                provider=job.provider, operation="upload", batch=job.id)
        # The new remote batch first: if create fails, the old one is still there to
        # be judged again (a deleted one would read as gone, a mismatch).
        remote_id = provider.create(view, self._ledger(job))
        self._note_remote_id(job, provider, remote_id)
        if old:
            try:
                provider.delete(view, old)
            except (TransientError, ProviderError) as exc:
                self.log.warning("batch.abandon_failed", batch=job.id, remote=old,
                                 reason=str(exc))
        self.store.abandon(job, remote_id, lost_answer=lost_answer, why=why)
        self.log.warning("batch.abandoned", batch=job.id, remote=old, reason=why,
                         cause="answer_lost" if lost_answer else "mismatch",
                         new_remote=remote_id)
        self._views.pop(job.id, None)
        if lost_answer and lost + 1 >= MAX_LOST_ANSWERS:
            raise TransientError(
                f"{lost + 1} remote batches were abandoned because an answer was lost "
                f"({why}); nothing was accepted, and the next one waits: check the network "
                "to the provider and its health")
        moved = self.store.job(job.id)
        assert moved is not None
        return moved

    def _nothing_left(self, job: JobRecord, provider: Provider, view: BatchView) -> JobRecord:
        """Before accept, every file was taken out of the batch (rejected): nothing is
        accepted; delivery puts them in errors with their reasons."""
        if job.remote_id and provider.steps.remote:
            try:
                provider.delete(view, job.remote_id)
            except (TransientError, ProviderError) as exc:
                self.log.warning("batch.abandon_failed", batch=job.id, remote=job.remote_id,
                                 reason=str(exc))
        return self._move(job, JobState.DOWNLOADED, detail="every file was rejected before "
                          "accept")

    def _accept(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """UPLOADED: the provider proves the remote batch holds the upload; store
        ACCEPTING (the point of no return), then accept."""
        if (caught := self._catch_up(job, provider)) is not None:
            return caught
        view = self._view(job, provider)
        if not view.documents:
            return self._nothing_left(job, provider, view)
        status = ask_status(provider, view, job.remote_id or "")
        if status.state in lifecycle.STARTED:
            return self._found_accepted(job, status)
        if (held := self._rejected_copies(job)):  # a crash came before its abandon
            return self._abandon(job, provider, view, f"remote batch holds a copy of "
                                 f"{held[0]}, which was rejected", lost_answer=False)
        if not provider.holds_upload(view, status):
            empty = status.state in lifecycle.OPEN and not status.documents
            if empty and self._within_grace(self._since(job, JobState.UPLOADED), provider):
                return self._wait(job, provider)  # the upload may not show yet
            return self._abandon(job, provider, view, f"remote batch is {status.state} with "
                                 f"{len(status.documents)} documents before accept",
                                 lost_answer=empty)
        job = self._move(job, JobState.ACCEPTING)
        return self._send_accept(job, provider, view)

    def _rejected_copies(self, job: JobRecord) -> list[str]:
        """Files rejected from the batch that its remote batch took (Clevver: a wrong
        copy): that remote batch is never started, or the copy would be stored."""
        notes = self.store.remote_documents(job.id)
        return [r.entry or r.source for r in self.store.files_of_job(job.id)
                if r.state == FileState.REJECTED and (n := notes.get(r.id)) is not None
                and n.get("batch") == job.remote_id and n.get("id")]

    def _send_accept(self, job: JobRecord, provider: Provider,
                     view: BatchView) -> JobRecord | None:
        try:
            provider.accept(view, job.remote_id or "", self._ledger(job))
        except NotSent as exc:
            # It surely never reached the provider: back before the point of no return,
            # and accept is sent again once the wait is over.
            self.store.transition(job, JobState.UPLOADED, detail=f"accept not sent: {exc}")
            raise
        self._views.pop(job.id, None)
        if self.stop.is_set():
            self.store.release(job, self.store.clock())
            return None
        return self._move(job, JobState.ACCEPTED)

    def _accept_again(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """ACCEPTING: accept may or may not have arrived; ask before sending it again.

        Started → ACCEPTED. Still holding the upload, never started → accept again: at
        once where accept is no point of no return (local); otherwise only once the
        provider had its status grace to show an accept that did arrive (an accept is
        processed asynchronously), and only on a status given by name. Anything else →
        what can still be proven is delivered, the rest fails as "may have been signed".
        """
        if provider.steps.accept_creates:
            job = self._created_by_accept(job, provider)
        view = self._view(job, provider)
        status = ask_status(provider, view, job.remote_id or "")
        if status.state in lifecycle.STARTED:
            return self._move(job, JobState.ACCEPTED, detail="found accepted")
        if status.state == Remote.GONE and provider.steps.accept_creates and \
                self._within_grace(self._since(job, JobState.ACCEPTING), provider):
            return self._wait(job, provider)  # a batch just created may not show yet
        if status.state in lifecycle.OPEN and provider.holds_upload(view, status):
            if not provider.steps.irrevocable:
                return self._send_accept(job, provider, view)
            since = self._since(job, JobState.ACCEPTING)
            now = self.store.clock()
            if status.trusted and not self._within_grace(since, provider):
                return self._send_accept(job, provider, view)
            if now - since > provider.max_wait:
                shown = status.detail or status.state
                raise ProviderError("never_accepted",
                                    f"batch {job.remote_id} still shows {shown} "
                                    f"{provider.max_wait:.0f} s after accept was sent; its "
                                    f"files may have been {provider.steps.outcome}: check "
                                    "with the provider",
                                    provider=job.provider, operation="accept", batch=job.id)
            return self._wait(job, provider)
        return self._lost_after_accept(job, provider, view, status)

    def _created_by_accept(self, job: JobRecord, provider: Provider) -> JobRecord:
        """ACCEPTING, where accept creates the remote batch: its id as the answer gave it
        (the store's, or the manifest's when the store lost that write). With none, the
        answer was lost and the provider cannot be asked: the files may have been taken,
        and are never sent again unasked (OUTCOME_UNKNOWN)."""
        if job.remote_id:
            return job
        ids = self.works[job.folder].remote_ids(job.id)
        if ids:
            self.store.set_remote_id(job, ids[-1])
            learnt = self.store.job(job.id)
            assert learnt is not None
            return learnt
        raise self._outcome_unknown(job, provider, "the answer to its create was lost")

    def _outcome_unknown(self, job: JobRecord, provider: Provider, why: str) -> ProviderError:
        """The files of a batch whose accept created its remote batch, when the provider
        cannot tell whether it took them: never sent again unasked."""
        since = datetime.fromtimestamp(self._since(job, JobState.ACCEPTING), UTC)
        name = provider.kind.capitalize()
        remote = f" (its batch there is {job.remote_id})" if job.remote_id else ""
        return ProviderError(
            OUTCOME_UNKNOWN,
            f"{why} (the create was sent at {since.isoformat(timespec='seconds')}): it may "
            f"have been {provider.steps.outcome}: look for a batch created at this time for "
            f"this file in {name}{remote} before retrying (published as "
            f"{provider.shown(job.publish_key) if job.publish_key else '-'}; the error record "
            "names it whole in provider.published); if there is none, `folderseal retry --force "
            "<retry_id>` sends it again (never `retry --all`)",
            provider=job.provider, operation="accept", batch=job.id)

    def _lost_after_accept(self, job: JobRecord, provider: Provider, view: BatchView,
                           status: RemoteStatus) -> JobRecord:
        """After ACCEPTING the provider no longer shows the batch as sent: what it can
        still prove (``salvage``) is recorded and delivered; every other file fails as
        "may have been signed/stored/loaded" and is never submitted again."""
        lost = (f"the provider no longer knows batch {job.remote_id} ({status.state}"
                f"{': ' + status.detail if status.detail else ''})")
        if provider.steps.accept_creates:  # nothing else to ask: it may have loaded them
            raise self._outcome_unknown(
                job, provider, f"{lost} {provider.status_grace:.0f} s (status_grace_seconds) "
                "after creating it")
        message = (f"{lost}; its files may have been {provider.steps.outcome}: check with "
                   "the provider before retrying")
        salvaged = {r.entry: r for r in provider.salvage(view, job.remote_id or "") if r.ok}
        if not salvaged:
            raise ProviderError("lost_after_accept", message, provider=job.provider,
                                operation="status", batch=job.id)
        failed = DocumentResult(entry="", error_code="lost_after_accept",
                                error_message=message)
        with self.store.transaction():
            for document in view.documents:
                result = salvaged.get(document.entry) or \
                    dataclasses.replace(failed, entry=document.entry)
                self.store.set_file_result(document.file_id, FileState.BATCHED, result,
                                           job_id=job.id)
            self.store.transition(job, JobState.DOWNLOADED,
                                  detail=f"salvaged {len(salvaged)} of {len(view.documents)} "
                                         "files after the provider lost the batch")
        self.log.warning("batch.salvaged", batch=job.id, remote=job.remote_id,
                         salvaged=len(salvaged), lost=len(view.documents) - len(salvaged))
        self._views.pop(job.id, None)
        return self._moved(job, JobState.DOWNLOADED)

    def _since(self, job: JobRecord, state: JobState) -> float:
        """When the job last entered ``state``."""
        return next((at for to, at in reversed(self.store.job_transitions(job.id))
                     if to == state), job.updated_at)

    def _poll(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """ACCEPTED: wait for the provider to finish the batch (closed, or failed: its
        download turns that into per-document failures)."""
        view = self._view(job, provider)
        # Once max_wait has passed the batch is asked one last time: a batch whose poll
        # waited behind others (a busy daemon, a spent request budget) is judged by the
        # provider's answer, not by how long it waited for its turn to ask. A failing ask
        # then ends it too, so it holds while status calls keep failing.
        overdue = self.store.clock() - self._since(job, JobState.ACCEPTED) > provider.max_wait
        try:
            status = ask_status(provider, view, job.remote_id or "")
        except NotSent:
            raise  # not asked yet (its turn to ask has not come): no answer to judge by
        except TransientError:
            if overdue:
                self._never_closed(job, provider)
            raise
        if overdue and status.state not in lifecycle.FINISHED:
            self._never_closed(job, provider)
        if status.progress is not None:
            self.store.set_progress(job, status.progress)
            self.log.info("batch.progress", batch=job.id, remote=job.remote_id,
                          progress=status.progress)
        if status.state in lifecycle.FINISHED:
            return self._move(job, JobState.CLOSED, detail=None if status.state ==
                              Remote.CLOSED else f"the provider says {status.state}")
        if status.state == Remote.GONE:
            if provider.steps.accept_creates and \
                    self._within_grace(self._since(job, JobState.ACCEPTED), provider):
                return self._wait(job, provider)  # a batch just created may not show yet
            return self._lost_after_accept(job, provider, view, status)
        if status.state == Remote.UPLOADED and not provider.steps.irrevocable:
            return self._send_accept(job, provider, view)
        self.store.release(job, self.store.clock() + provider.poll_interval)
        return None

    @staticmethod
    def _never_closed(job: JobRecord, provider: Provider) -> None:
        raise ProviderError("never_closed",
                            f"batch {job.remote_id} did not close within "
                            f"{provider.max_wait:.0f} s (max_wait_seconds); its files may have "
                            f"been {provider.steps.outcome}: check with the provider; "
                            "`folderseal retry` asks the same batch again",
                            provider=job.provider, operation="status", batch=job.id)

    def _download(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """CLOSED: fetch the results and record each file's outcome. While a result is
        pending (Clevver: a receipt without its txid) the batch waits and asks again at
        the next poll; once max_wait since ACCEPTED has passed, a pending result fails
        with its own reason."""
        view = self._view(job, provider)
        results = {r.entry: r for r in provider.download(view, job.remote_id or "")}
        pending = sum(1 for d in view.documents
                      if (r := results.get(d.entry)) is not None and r.pending)
        if pending and self.store.clock() - self._since(job, JobState.ACCEPTED) <= \
                provider.max_wait:
            self.log.info("batch.results_pending", batch=job.id, remote=job.remote_id,
                          pending=pending)
            return self._wait(job, provider)
        with self.store.transaction():
            for document in view.documents:
                result = results.get(document.entry) or DocumentResult(
                    entry=document.entry, error_code="missing",
                    error_message="the provider returned no result for this file")
                if result.pending:
                    result = _timed_out(result, provider)
                self.store.set_file_result(document.file_id, FileState.BATCHED, result,
                                           job_id=job.id)
            self.store.transition(job, JobState.DOWNLOADED)
        self._views.pop(job.id, None)  # its files are no longer waiting for the provider
        return self._moved(job, JobState.DOWNLOADED)

    def _deliver(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """DOWNLOADED: publish outputs and sidecars; failed files go to errors."""
        records = self.store.files_of_job(job.id)
        self.sinks[job.folder].deliver(records, self._context(job, provider, len(records)),
                                       keep_lease=lambda: self.store.keep_lease(job.id))
        crashpoints.reached("sidecar-published")
        return self._move(job, JobState.DELIVERED)

    def _clean(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """DELIVERED: remove originals (or archive them), then the remote batch."""
        self.sinks[job.folder].finish(self.store.files_of_job(job.id))
        crashpoints.reached("original-removed")
        view = self._view(job, provider)
        try:
            provider.delete(view, job.remote_id or "")
        except (TransientError, ProviderError) as exc:
            # The outputs are safe; the remote copy is removed on a later pass.
            self.log.warning("batch.delete_failed", batch=job.id, reason=str(exc))
            raise TransientError(f"deleting the remote batch failed: {exc}") from exc
        if job.publish_key:
            self.store.set_publish_key(job, None)
        shutil.rmtree(view.staging, ignore_errors=True)
        if not self.works[job.folder].remove_batch(job.id):
            # An original that could not go to errors is kept here, on record.
            self.log.warning("batch.folder_kept", batch=job.id, folder=str(view.files_dir))
        if view.package is not None:  # what prepare made
            view.package.unlink(missing_ok=True)
        moved = self._move(job, JobState.CLEANED)
        self.store.release(moved, None)
        return None

    def _sink_failures(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """FAILED: move each rejected file to errors with its record; then rest."""
        records = self.store.files_of_job(job.id)
        context = self._context(job, provider, len(records))
        try:
            for record in records:
                if record.state == FileState.REJECTED:
                    self.sinks[job.folder].fail(record, context)
        except TransientError as exc:  # the errors folder is full or gone: come back later
            self.log.warning("batch.failures_postponed", batch=job.id, reason=str(exc))
            delay = self._delay(None, provider)(job.attempts + 1)
            self.store.release(job, self.store.clock() + delay)
            return None
        # Every file is in errors: what the batch left in the state folder can go (a
        # retry of a remote batch downloads again; one before accept re-batches).
        view = self._view(job, provider)
        shutil.rmtree(view.staging, ignore_errors=True)
        if view.package is not None:
            view.package.unlink(missing_ok=True)
        self.store.release(job, self._unpublish_failed(job, provider, view))
        return None

    def _unpublish_failed(self, job: JobRecord, provider: Provider,
                          view: BatchView) -> float | None:
        """Remove what a failed batch published (Steps.publishes); when it cannot be
        removed yet, the time to come back. After OUTCOME_UNKNOWN it stays for max_wait
        (the provider may still fetch it for a create whose answer was lost), then goes:
        a later fetch fails, which loads nothing."""
        if not job.publish_key:
            return None
        due = self._since(job, JobState.FAILED) + (
            provider.max_wait if job.error_code == OUTCOME_UNKNOWN else 0.0)
        if self.store.clock() < due:
            return due
        try:
            provider.delete(view, job.remote_id or "")
        except (TransientError, ProviderError) as exc:
            self.log.warning("batch.unpublish_failed", batch=job.id,
                             key=provider.shown(job.publish_key),
                             reason=str(exc), retry="later")
            return self.store.clock() + self._delay(None, provider)(job.attempts + 1)
        self.store.set_publish_key(job, None)
        return None

    def _context(self, job: JobRecord, provider: Provider, count: int) -> JobContext:
        return JobContext(job=job, provider_name=provider.name, provider_kind=provider.kind,
                          outcome=provider.steps.outcome, batch_files=count,
                          history=self.store.job_history(job.id))


def _timed_out(result: DocumentResult, provider: Provider) -> DocumentResult:
    """A result still pending once max_wait has passed: a failure, with the provider's
    own reason when it gave one."""
    return dataclasses.replace(
        result, pending=False, error_code=result.error_code or "no_result",
        error_message=result.error_message or (
            f"the provider gave no final result for this file within {provider.max_wait:.0f} "
            f"s (max_wait_seconds); it may have been {provider.steps.outcome}: check with "
            "the provider; `folderseal retry` asks again"))
