"""The batch state machine: every batch, driven through its provider's lifecycle.

This is the one place that knows what each state means and which step follows it
(:data:`STEPS`). Each step runs under the batch's lease, ends in a guarded transition (so
a restart resumes with the next step, as in docs/design.md's crash table), and is one of:

* done: the batch moves on and the next step runs at once;
* waiting: the provider is still working; the batch is released until its next poll;
* transient failure: the batch is released with exponential backoff and jitter, its
  attempt count kept in the store across restarts (:mod:`folderseal.batches.backoff`);
* permanent failure: the batch is FAILED and each of its files goes to errors with
  the reason (files of a batch that may have been signed are never re-batched).

What a state means for the files (may they be sent again?) is
:mod:`folderseal.batches.lifecycle`'s table; what a provider does in each step, and how it
proves an upload complete, is the provider's (:mod:`folderseal.providers`). The steps
themselves live by phase, each working with one
:class:`~folderseal.batches.context.StepContext`: before accept in
:mod:`~folderseal.batches.send` (with abandoning a remote batch that may not hold exactly
this batch), the point of no return in :mod:`~folderseal.batches.accept` (and
:mod:`~folderseal.batches.creates` for providers whose accept creates the remote batch),
waiting and fetching results in :mod:`~folderseal.batches.poll`, and the end in
:mod:`~folderseal.batches.deliver`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from folderseal.batches import accept, deliver, lifecycle, poll, send
from folderseal.batches.backoff import Delay, backoff
from folderseal.batches.context import StepContext
from folderseal.batches.views import Staging
from folderseal.core import metrics
from folderseal.core.errors import (
    LeaseLost,
    ProviderError,
    StoreError,
    Throttled,
    TransientError,
)
from folderseal.core.logs import get as get_logger
from folderseal.core.model import BatchRecord, BatchState
from folderseal.providers import Abandon, Provider
from folderseal.publish.sink import Sink
from folderseal.store import Store
from folderseal.work import WorkFolder

Step = Callable[[StepContext, BatchRecord], BatchRecord | None]

# What each state means, by the step that follows it: the batch it returns runs its next
# step at once; None means the batch waits (released) or rests. CLEANED has none.
STEPS: dict[BatchState, Step] = {
    BatchState.BATCHED: send.create,          # files batched: prepare, create remote batch
    BatchState.CREATED: send.upload,          # remote batch made: send the documents
    BatchState.UPLOADED: accept.accept,       # sent: proven held? ACCEPTING, accept
    BatchState.ACCEPTING: accept.accept_again,  # accept may have arrived: ask first
    BatchState.ACCEPTED: poll.poll,           # the provider works: poll until it finishes
    BatchState.CLOSED: poll.download,         # finished: fetch each file's result
    BatchState.DOWNLOADED: deliver.deliver,   # results kept: publish outputs, sidecars
    BatchState.DELIVERED: deliver.clean,      # outputs durable: remove originals, remote
    BatchState.FAILED: deliver.sink_failures,  # failed for good: files to errors
}


# What the operator does after a lease.lost: nothing, the batch goes on elsewhere.
TAKEN_OVER = "none: another thread or node has the batch now and goes on with it"
MOVED_ON = "none: the batch is in another state than this turn expected; its next turn goes on"


class Busy:
    """The batches the threads of this process are working on; used as its own lock.

    Acquiring skips them, so two threads never work on one batch, even when a long step
    let its lease lapse.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: set[str] = set()

    def __enter__(self) -> Busy:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def batches(self) -> frozenset[str]:
        return frozenset(self._batches)

    def add(self, batch_id: str) -> None:
        self._batches.add(batch_id)

    def discard(self, batch_id: str) -> None:
        with self._lock:
            self._batches.discard(batch_id)


class Machine:
    """Advances due batches; one per batch thread (each thread has its own store connection)."""

    def __init__(self, store: Store, providers: dict[str, Provider], sinks: dict[str, Sink],
                 works: dict[str, WorkFolder], state_dir: Path, stop: threading.Event,
                 delay: Delay = backoff, busy: Busy | None = None,
                 staging: Staging | None = None) -> None:
        self.store = store
        self.busy = busy or Busy()
        self.providers = providers
        self.sinks = sinks
        self.works = works
        self.state_dir = state_dir
        self.staging = staging or Staging(state_dir)  # one node's, unless told
        self.stop = stop
        self.delay = delay
        self.log = get_logger()
        self.store_id = store.store_id

    def run_once(self) -> bool:
        """Advance the batch that is due first; False if none is due."""
        with self.busy:
            batch = self.store.acquire_batch(self.busy.batches())
            if batch is None:
                return False
            self.busy.add(batch.id)
        lease = self.store.leases.get(batch.id)
        try:
            self.advance(batch)
        finally:
            # A turn that ended without releasing the batch (its release failed, or the
            # store refused a write) must not leave the lease keeper renewing it: the
            # lease then runs out and the batch is due again, here or on another node.
            if lease is not None:
                self.store.leases.drop(batch.id, lease.holder)
            self.busy.discard(batch.id)
        return True

    def advance(self, batch: BatchRecord) -> None:
        """Run steps of one batch until it waits, finishes, fails, or the daemon stops."""
        provider = self.providers[batch.provider]
        log = self.log.bind(batch=batch.id, folder=batch.folder, provider=batch.provider)
        ctx = StepContext(batch, self.store, provider, self.works, self.sinks, self.state_dir,
                          self.stop, self.delay, self.log, self.staging)
        with self.store.holding(batch.id):  # every write of the turn checks the lease
            self._steps(ctx, batch, log)

    def _steps(self, ctx: StepContext, batch: BatchRecord, log: Any) -> None:
        current: BatchRecord | None = batch
        try:
            while current is not None:
                if self.stop.is_set():
                    self.store.release(current, self.store.clock())
                    return
                step = STEPS.get(current.state)
                if step is None:  # CLEANED
                    self.store.release(current, None)
                    return
                self._require_work_folder(current)
                batch_id = current.id
                try:
                    current = step(ctx, current)
                except Abandon as exc:
                    current = send.abandoned(ctx, batch_id, exc)
        except Throttled as exc:  # its turn comes later: not a failure
            self._release_now(batch.id, exc.retry_after or 1.0, log)
        except TransientError as exc:
            self._postpone(batch.id, "transient", str(exc), ctx.retry_delay(exc), log)
        except ProviderError as exc:
            self._fail(ctx, batch.id, exc.code, exc.message, log)
        except OSError as exc:
            # The disk or a folder is in trouble (full, read-only, gone): wait and retry.
            self._postpone(batch.id, "io", f"{exc.strerror or exc}: {exc.filename or ''}",
                           ctx.retry_delay(), log)
        except LeaseLost as exc:  # someone else has it now
            log.warning("lease.lost", reason=str(exc), next_step=TAKEN_OVER)
        except StoreError as exc:  # StateConflict: the batch moved on without this turn
            log.warning("batch.state_conflict", reason=str(exc), next_step=MOVED_ON)
        except Exception as exc:  # noqa: BLE001 - one batch's surprise must not stop all
            # A step that fails in a way nobody foresaw (a provider's odd answer, a bug):
            # the batch waits with backoff, loudly, and status shows why; restarting the
            # daemon would only hit the same batch again and stop every folder with it.
            log.exception("batch.step_crashed", state=batch.state)
            self._postpone(batch.id, "internal", f"{type(exc).__name__}: {exc}",
                           ctx.retry_delay(), log)

    def _require_work_folder(self, batch: BatchRecord) -> None:
        """Every step reads, moves or removes files in the work folder: never while the
        inbox share is away, where its mount point is an empty folder and a missing
        original would look removed already."""
        if not self.works[batch.folder].attached(self.store_id):
            raise TransientError(f"the work folder of folder {batch.folder!r} cannot be "
                                 "reached (is the inbox share mounted?); the batch waits")

    def _release_now(self, batch_id: str, seconds: float, log: Any) -> None:
        """Release the batch (in whatever state it is now) for ``seconds``."""
        current = self.store.batch(batch_id)
        if current is None:
            return
        try:
            self.store.release(current, self.store.clock() + seconds)
        except (StoreError, TransientError) as exc:
            log.warning("batch.release_failed", reason=str(exc), retry="when its lease runs out")

    def _postpone(self, batch_id: str, code: str, message: str, delay: Delay, log: Any) -> None:
        try:
            current = self.store.batch(batch_id)
            assert current is not None
            attempts, at = self.store.postpone(current, delay, code, message)
        except StoreError as exc:
            log.warning("lease.lost", reason=str(exc), next_step=TAKEN_OVER)
            return
        except TransientError as exc:  # the state folder itself takes no writes
            log.warning("batch.postpone_failed", reason=str(exc),
                        retry="when its lease runs out")
            return
        metrics.RETRIES.labels(current.folder, current.provider, code).inc()
        log.warning("batch.postponed", state=current.state, reason=message, attempts=attempts,
                    retry_in=round(at - self.store.clock(), 1))

    def _fail(self, ctx: StepContext, batch_id: str, code: str, message: str, log: Any) -> None:
        """The batch failed for good: FAILED, and each of its files to errors."""
        current = self.store.batch(batch_id)
        assert current is not None
        steps = self.providers[current.provider].steps
        if lifecycle.may_have_run(current.state, steps) and "may have been" not in message:
            # Whatever refused, the provider may have run the batch: the operator must
            # know before dropping its files again.
            message = (f"{message}; its files may have been {steps.outcome}: check with "
                       "the provider; `folderseal retry` asks the same batch again")
        try:
            self.store.fail_batch(current, code, message)
        except StoreError as exc:
            log.warning("lease.lost", reason=str(exc), next_step=TAKEN_OVER)
            return
        log.error("batch.failed", code=code, reason=message, state=current.state)
        failed = self.store.batch(batch_id)
        assert failed is not None
        try:
            deliver.sink_failures(ctx, failed)
        except LeaseLost as exc:  # its files go to errors by the node that holds it now
            log.warning("lease.lost", reason=str(exc), next_step=TAKEN_OVER)
        except StoreError as exc:
            log.warning("batch.state_conflict", reason=str(exc), next_step=MOVED_ON)
