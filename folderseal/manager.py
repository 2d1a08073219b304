"""The job state machine: every batch, driven through its provider's lifecycle.

This is the one place that knows what each state means and which step follows it.
Each step runs under the job's lease, ends in a guarded transition (so a restart
resumes with the next step, as in docs/crash-table.md), and is one of:

* done: the job moves on and the next step runs at once;
* waiting: the provider is still working; the job is released until its next poll;
* transient failure: the job is released with exponential backoff and jitter, its
  attempt count kept in the store across restarts;
* permanent failure: the job is FAILED and each of its files goes to errors with
  the reason (files of a batch that may have been signed are never re-batched).
"""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from folderseal import batch as batching
from folderseal import crashpoints, metrics
from folderseal.errors import ProviderError, StoreError, TransientError
from folderseal.folders import JobContext
from folderseal.logs import get as get_logger
from folderseal.model import DocumentResult, FileState, JobRecord, JobState
from folderseal.providers import BatchView, Document, Provider, Remote, RemoteStatus
from folderseal.sink import Sink
from folderseal.store import Store
from folderseal.workdir import WorkFolder

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
MAX_RECREATES = 3  # remote batches abandoned before accept, before the batch fails
# A remote batch in these states was accepted: its files may be signed already.
ACCEPTED_ALREADY = (Remote.RUNNING, Remote.CLOSED)


def backoff(attempts: int) -> float:
    """Seconds to wait before attempt ``attempts + 1``: doubling, capped, with jitter."""
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0)


class _Ledger:
    """Counts each signing attempt in the store before it is made."""

    def __init__(self, store: Store, job: JobRecord, stop: threading.Event) -> None:
        self.store = store
        self.job = job
        self.stop = stop

    def begin(self, documents: list[Document]) -> list[int]:
        counts = self.store.begin_attempts(self.job, [d.file_id for d in documents])
        crashpoints.reached("attempt")
        return counts

    def forgive(self, documents: list[Document]) -> None:
        self.store.forgive_attempts(self.job, [d.file_id for d in documents])

    def stopping(self) -> bool:
        return self.stop.is_set()


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
                current = step(current, provider)
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
        """The batch as the provider sees it; read once per :meth:`advance`."""
        cached = self._views.get(job.id)
        if cached is not None:
            return cached
        documents = tuple(
            Document(entry=r.entry or "", file_id=r.id, sha256=r.sha256 or "", size=r.size,
                     dev=r.dev, ino=r.ino, attempts=r.attempts)
            for r in self.store.files_of_job(job.id) if r.state == FileState.BATCHED
        )
        package = self.state_dir / "packages" / f"{job.id}.zip" if provider.wants_package \
            else None
        view = BatchView(id=job.id, folder=job.folder, documents=documents,
                         files_dir=self.works[job.folder].batch_dir(job.id), package=package,
                         staging=self.state_dir / "downloads" / job.id)
        self._views[job.id] = view
        return view

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
        try:
            self.store.fail_job(current, code, message)
        except StoreError as exc:
            log.warning("batch.lease_lost", reason=str(exc))
            return
        log.error("batch.failed", code=code, reason=message, state=current.state)
        failed = self.store.job(job_id)
        assert failed is not None
        self._sink_failures(failed, self.providers[failed.provider])

    @staticmethod
    def _manifest(view: BatchView) -> list[str]:
        return sorted(d.entry for d in view.documents)

    # -- the steps -----------------------------------------------------------------

    def _create(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """BATCHED: finish moving files in, build the package, create the remote batch."""
        work = self.works[job.folder]
        batching.move_into_batch(work, job.id, job.provider, self.store.files_of_job(job.id))
        if (caught := self._catch_up(job, provider)) is not None:
            return caught
        view = self._view(job, provider)
        if view.package is not None and not batching.package_matches(view.package,
                                                                     job.package_sha256):
            work = self.works[job.folder]
            records = {r.id: r for r in self.store.files_of_job(job.id)}
            members = [(d.entry, partial(work.open_file, records[d.file_id]))
                       for d in view.documents]
            view.package.parent.mkdir(parents=True, exist_ok=True)
            digest, size = batching.build_package(view.package, members)
            self.store.set_package(job, digest, size)
        remote_id = provider.create(view)
        self._note_remote_id(job, provider, remote_id)
        return self._move(job, JobState.CREATED, remote_id=remote_id)

    def _note_remote_id(self, job: JobRecord, provider: Provider, remote_id: str) -> None:
        """Keep a remote batch id beside the batch before anything is sent there: with it,
        ``folderseal recover`` can ask the provider about the batch if the store is lost."""
        if provider.kind != "local":
            self.works[job.folder].note_remote_id(job.id, remote_id)

    def _upload(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """CREATED: upload, once. After any doubt the remote status decides: the manifest
        is there → uploaded; nothing there and no upload ever sent → upload; anything
        else → abandon this remote batch (it was never accepted) and start a new one."""
        if (caught := self._catch_up(job, provider)) is not None:
            return caught
        view = self._view(job, provider)
        remote_id = job.remote_id or ""
        status = provider.status(view, remote_id)
        if status.state in ACCEPTED_ALREADY:
            return self._found_accepted(job, status)
        if self._holds_manifest(status, view):
            return self._move(job, JobState.UPLOADED, detail="found uploaded")
        sent = self.store.upload_sent_at(job.id, remote_id)
        empty = status.state in (Remote.NEW, Remote.RUNNING) and not status.documents
        if empty and sent is None:
            self.store.note_upload(job, remote_id)  # durable before the upload goes out
            provider.upload(view, remote_id)
            return self._move(job, JobState.UPLOADED)
        if empty and sent is not None and self._within_grace(sent, provider):
            return self._wait(job, provider)  # it may still be unpacking what was sent
        return self._recreate(job, provider, view, f"remote batch is {status.state} with "
                              f"{len(status.documents)} documents"
                              f"{' after an upload was sent' if sent else ''}")

    def _within_grace(self, since: float, provider: Provider) -> bool:
        """True while something sent may not show in the provider's status yet."""
        return self.store.clock() - since < provider.status_grace

    def _wait(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """Release the job until the provider's next poll (the step is asked again)."""
        self.store.release(job, self.store.clock() + max(provider.poll_interval, 1.0))
        return None

    def _found_accepted(self, job: JobRecord, status: RemoteStatus) -> JobRecord:
        """Before accept, the remote batch shows accepted or signed: the store is behind
        (restored from a copy, or it lost its last writes). Its files may be signed: go on
        from ACCEPTED, never abandon it and submit them again."""
        self.log.warning("batch.store_behind", batch=job.id, remote=job.remote_id,
                         state=job.state, remote_state=str(status.state))
        return self._move(job, JobState.ACCEPTED, detail=f"found {status.state} before "
                          "accept: the store was behind")

    def _catch_up(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """Before anything is sent: a remote batch the batch's manifest names but the store
        does not (a store restored from a copy, or one that lost its last writes) decides
        first, so that files it may have signed are never submitted again. Accepted → on
        from ACCEPTED; holding the upload → ACCEPTING (its status decides on accept);
        created or uploaded in part (never accepted) → deleted, and the step goes on."""
        if provider.kind == "local":
            return None
        manifest = self.works[job.folder].manifest(job.id) or {}
        ids = [r for r in manifest.get("remote_ids", []) if isinstance(r, str) and r]
        if not ids or ids[-1] == job.remote_id:
            return None
        newer, view = ids[-1], self._view(job, provider)
        status = provider.status(view, newer)
        self.log.warning("batch.store_behind", batch=job.id, remote=newer,
                         stored=job.remote_id, remote_state=str(status.state))
        if status.state in ACCEPTED_ALREADY:
            return self._move(job, JobState.ACCEPTED, remote_id=newer,
                              detail=f"found accepted: {newer}")
        if self._holds_manifest(status, view):
            return self._move(job, JobState.ACCEPTING, remote_id=newer,
                              detail=f"found uploaded: {newer}")
        if status.state != Remote.GONE:
            provider.delete(view, newer)
        return None

    def _holds_manifest(self, status: RemoteStatus, view: BatchView) -> bool:
        """The remote batch holds exactly this batch's files and is not gone or done."""
        return status.state in (Remote.NEW, Remote.UPLOADED, Remote.RUNNING) and \
            sorted(status.documents) == self._manifest(view)

    def _recreate(self, job: JobRecord, provider: Provider, view: BatchView,
                  why: str) -> JobRecord:
        """Abandon a remote batch that was never accepted and start a new one; after
        MAX_RECREATES the batch fails (before accept: retry submits it afresh)."""
        old = job.remote_id or ""
        if self.store.recreations(job.id) >= MAX_RECREATES:
            raise ProviderError("remote_mismatch",
                                f"the provider's batch did not match what was uploaded "
                                f"{MAX_RECREATES + 1} times ({why}); nothing was accepted",
                                provider=job.provider, operation="upload", batch=job.id)
        try:
            provider.delete(view, old)
        except (TransientError, ProviderError) as exc:
            self.log.warning("batch.abandon_failed", batch=job.id, remote=old, reason=str(exc))
        remote_id = provider.create(view)
        self._note_remote_id(job, provider, remote_id)
        self.store.transition(job, JobState.CREATED, detail=f"abandoned {old}: {why}",
                              remote_id=remote_id)
        self.log.warning("batch.abandoned", batch=job.id, remote=old, reason=why,
                         new_remote=remote_id)
        moved = self.store.job(job.id)
        assert moved is not None
        return moved

    def _accept(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """UPLOADED: check the remote list equals the manifest, store ACCEPTING, accept."""
        if (caught := self._catch_up(job, provider)) is not None:
            return caught
        view = self._view(job, provider)
        status = provider.status(view, job.remote_id or "")
        if status.state in ACCEPTED_ALREADY:
            return self._found_accepted(job, status)
        if not self._holds_manifest(status, view):
            if not status.documents and status.state in (Remote.NEW, Remote.RUNNING) and \
                    self._within_grace(self._since(job, JobState.UPLOADED), provider):
                return self._wait(job, provider)  # the upload may not show yet
            return self._recreate(job, provider, view, f"remote batch is {status.state} with "
                                  f"{len(status.documents)} documents before accept")
        job = self._move(job, JobState.ACCEPTING)
        return self._send_accept(job, provider, view)

    def _send_accept(self, job: JobRecord, provider: Provider,
                     view: BatchView) -> JobRecord | None:
        provider.accept(view, job.remote_id or "", _Ledger(self.store, job, self.stop))
        if self.stop.is_set():
            self.store.release(job, self.store.clock())
            return None
        return self._move(job, JobState.ACCEPTED)

    def _accept_again(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """ACCEPTING: accept may or may not have arrived; ask before sending it again.

        Accepted or further → ACCEPTED. Still uploaded with the manifest → send accept
        again, but only once the provider had ACCEPT_GRACE to show an accept that did
        arrive (an accept is processed asynchronously), and only on a status given by
        name. Gone → FAILED, "may have been signed".
        """
        view = self._view(job, provider)
        status = provider.status(view, job.remote_id or "")
        if status.state in (Remote.RUNNING, Remote.CLOSED):
            return self._move(job, JobState.ACCEPTED, detail="found accepted")
        if status.state in (Remote.NEW, Remote.UPLOADED) and \
                sorted(status.documents) == self._manifest(view):
            if provider.resumable_accept:
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
                                    "files may have been signed: check with the provider",
                                    provider=job.provider, operation="accept", batch=job.id)
            return self._wait(job, provider)
        raise ProviderError("lost_after_accept",
                            f"the provider no longer knows batch {job.remote_id} ({status.state}"
                            f"{': ' + status.detail if status.detail else ''}); its files may "
                            "have been signed: check with the provider before retrying",
                            provider=job.provider, operation="status", batch=job.id)

    def _since(self, job: JobRecord, state: JobState) -> float:
        """When the job last entered ``state``."""
        return next((at for to, at in reversed(self.store.job_transitions(job.id))
                     if to == state), job.updated_at)

    def _poll(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """ACCEPTED: wait for the provider to close the batch."""
        view = self._view(job, provider)
        if self.store.clock() - self._since(job, JobState.ACCEPTED) > provider.max_wait:
            self._never_closed(job, provider)  # even while status calls keep failing
        status = provider.status(view, job.remote_id or "")
        if status.state == Remote.CLOSED:
            return self._move(job, JobState.CLOSED)
        if status.state == Remote.GONE:
            raise ProviderError("lost_after_accept",
                                f"the provider no longer knows batch {job.remote_id}; its files "
                                "may have been signed: check with the provider",
                                provider=job.provider, operation="status", batch=job.id)
        if status.state == Remote.UPLOADED and provider.resumable_accept:
            return self._send_accept(job, provider, view)
        now = self.store.clock()
        if now - self._since(job, JobState.ACCEPTED) > provider.max_wait:
            self._never_closed(job, provider)
        self.store.release(job, now + provider.poll_interval)
        return None

    @staticmethod
    def _never_closed(job: JobRecord, provider: Provider) -> None:
        raise ProviderError("never_closed",
                            f"batch {job.remote_id} did not close within "
                            f"{provider.max_wait:.0f} s (max_wait_seconds); its files may have "
                            "been signed: check with the provider; `folderseal retry` asks "
                            "the same batch again", provider=job.provider, operation="status",
                            batch=job.id)

    def _download(self, job: JobRecord, provider: Provider) -> JobRecord | None:
        """CLOSED: fetch the results and record each file's outcome."""
        view = self._view(job, provider)
        results = {r.entry: r for r in provider.download(view, job.remote_id or "")}
        with self.store.transaction():
            for document in view.documents:
                result = results.get(document.entry) or DocumentResult(
                    entry=document.entry, error_code="missing",
                    error_message="the provider returned no result for this file")
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
        shutil.rmtree(view.staging, ignore_errors=True)
        if not self.works[job.folder].remove_batch(job.id):
            # An original that could not go to errors is kept here, on record.
            self.log.warning("batch.folder_kept", batch=job.id, folder=str(view.files_dir))
        if view.package is not None:
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
        self.store.release(job, None)
        return None

    def _context(self, job: JobRecord, provider: Provider, count: int) -> JobContext:
        return JobContext(job=job, provider_name=provider.name, provider_kind=provider.kind,
                          outcome=provider.steps.outcome, batch_files=count,
                          history=self.store.job_history(job.id))
