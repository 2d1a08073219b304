"""What every step of one batch's turn works with (:class:`StepContext`): the store, the
batch's provider, work folder and sink, the batch as the provider sees it, and the
guarded transition that ends a step.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from folderseal.batches import views
from folderseal.batches.backoff import Delay, retry_delay
from folderseal.batches.fence import fenced
from folderseal.batches.ledger import BatchLedger
from folderseal.core import crashpoints
from folderseal.core.errors import TransientError
from folderseal.core.model import BatchRecord, BatchState, FileState
from folderseal.providers import BatchView, Provider
from folderseal.publish.folders import BatchContext
from folderseal.publish.sink import Sink
from folderseal.store import Store
from folderseal.work import WorkFolder


class StepContext:
    """One batch's turn with a batch thread: made afresh for each turn, so the batch is read
    from the store once per turn (and afresh after a step that changed it)."""

    def __init__(self, batch: BatchRecord, store: Store, provider: Provider,
                 works: Mapping[str, WorkFolder], sinks: Mapping[str, Sink], state_dir: Path,
                 stop: threading.Event, delay: Delay, log: Any,
                 staging: views.Staging | None = None) -> None:
        self.folder = batch.folder
        self.store = store
        self.provider = fenced(provider, lambda: store.keep_lease(batch.id))
        self._works = works
        self._sinks = sinks
        self.state_dir = state_dir
        self.staging = staging or views.Staging(state_dir)  # one node's, unless told
        self.stop = stop
        self.delay = delay  # the daemon's backoff
        self.log = log
        self._view: BatchView | None = None

    @property
    def work(self) -> WorkFolder:
        return self._works[self.folder]

    @property
    def sink(self) -> Sink:
        return self._sinks[self.folder]

    def view(self, batch: BatchRecord) -> BatchView:
        """The batch as the provider sees it: its files still waiting for the provider,
        each with the provider's latest answer for it; read once per turn (and afresh
        after :meth:`forget_view`)."""
        if self._view is not None:
            return self._view
        work = self.work
        records = {r.id: r for r in self.store.files_of_batch(batch.id)
                   if r.state == FileState.BATCHED}
        notes = self.store.remote_documents(batch.id)
        documents = (views.document(entry=r.entry or "", file_id=r.id, sha256=r.sha256 or "",
                                    size=r.size, dev=r.dev, ino=r.ino, attempts=r.attempts,
                                    notes=notes) for r in records.values())
        prepared = (batch.package_sha256, batch.package_bytes) \
            if batch.package_sha256 and batch.package_bytes is not None else None
        self._view = views.batch_view(
            batch.id, work, self.staging, documents, epoch=batch.epoch,
            package=self.staging.package(work, batch.id, batch.epoch),
            open_document=lambda d: work.open_file(records[d.file_id]),
            prepared=prepared, published=batch.publish_key or "",
            file_mode=self.sink.cfg.file_mode)
        return self._view

    def forget_view(self) -> None:
        """The batch's documents changed: the next :meth:`view` reads them afresh."""
        self._view = None

    def ledger(self, batch: BatchRecord) -> BatchLedger:
        return BatchLedger(self.store, self.work, batch, self.stop, self.forget_view)

    def move(self, batch: BatchRecord, to_state: BatchState, remote_id: str | None = None,
             detail: str | None = None) -> BatchRecord:
        self.store.transition(batch, to_state, detail=detail, remote_id=remote_id)
        return self.moved(batch, to_state)

    def moved(self, batch: BatchRecord, to_state: BatchState) -> BatchRecord:
        """After a committed transition: log it, offer the crash point, reload the batch."""
        moved = self.store.batch(batch.id)
        assert moved is not None
        self.log.info(f"batch.{to_state.lower()}", batch=batch.id, folder=batch.folder,
                      provider=batch.provider, remote=moved.remote_id)
        crashpoints.reached(f"state:{to_state}")
        return moved

    def since(self, batch: BatchRecord, state: BatchState) -> float:
        """When the batch last entered ``state``."""
        return next((at for to, at in reversed(self.store.batch_transitions(batch.id))
                     if to == state), batch.updated_at)

    def within_grace(self, since: float) -> bool:
        """True while something sent may not show in the provider's status yet."""
        return self.store.clock() - since < self.provider.status_grace

    def wait(self, batch: BatchRecord) -> BatchRecord | None:
        """Release the batch until the provider's next poll (the step is asked again)."""
        self.store.release(batch, self.store.clock() + max(self.provider.poll_interval, 1.0))
        return None

    def retry_delay(self, exc: TransientError | None = None) -> Delay:
        """How long the batch waits after ``exc`` (or a failure that is not the
        provider's), by its attempts: see :mod:`folderseal.batches.backoff`."""
        return retry_delay(self.delay, exc, self.provider)

    def note_remote_id(self, batch: BatchRecord, remote_id: str) -> None:
        """Keep a remote batch id beside the batch before anything is sent there: with it,
        ``folderseal recover`` can ask the provider about the batch if the store is lost.
        (A provider whose accept creates the batch has none yet: "".)"""
        if self.provider.steps.remote and remote_id:
            self.work.manifests.note_remote_id(batch.id, remote_id, batch.epoch)

    def delivery(self, batch: BatchRecord, count: int) -> BatchContext:
        """What the sink writes into each sidecar and error record of the batch."""
        provider = self.provider
        return BatchContext(batch=batch, provider_name=provider.name, provider_kind=provider.kind,
                          outcome=provider.steps.outcome, batch_files=count,
                          history=self.store.batch_history(batch.id),
                          staged_in=(self.staging.folder(self.work, batch.id, batch.epoch),
                                     *self.staging.earlier(self.work, batch.id, batch.epoch)),
                          fence=lambda: self.store.renew_lease(batch.id))
