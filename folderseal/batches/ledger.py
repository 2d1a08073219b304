"""The ledger a provider's step is handed: what the provider reports during a step is
recorded at once, durably, before the step goes on.

Each record goes beside the batch in the work folder first (its manifest, which
``folderseal recover`` reads if the store is lost), then into the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from folderseal.core import crashpoints
from folderseal.core.model import BatchRecord, DocumentResult, FileState
from folderseal.providers import Document, RemoteDocument
from folderseal.store import Store
from folderseal.work import WorkFolder


class BatchLedger:
    """The :class:`~folderseal.providers.Ledger` of one batch's step."""

    def __init__(self, store: Store, work: WorkFolder, batch: BatchRecord, stop: threading.Event,
                 changed: Callable[[], None]) -> None:
        self.store = store
        self.manifests = work.manifests
        self.batch = batch
        self.stop = stop
        self.changed = changed  # the batch's documents changed: read them afresh

    def begin(self, documents: list[Document]) -> list[int]:
        counts = self.store.begin_attempts(self.batch, [d.file_id for d in documents])
        crashpoints.reached("attempt")
        return counts

    def forgive(self, documents: list[Document]) -> None:
        self.store.forgive_attempts(self.batch, [d.file_id for d in documents])

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
        self.manifests.note_document(self.batch.id, document.file_id, note, self.batch.epoch)
        self.store.note_remote_document(self.batch.id, document.file_id, note)
        self.changed()

    def reject(self, document: Document, code: str, message: str,
               block: dict[str, Any] | None = None) -> None:
        """The file leaves the batch as failed; it goes to errors with the batch. Marked
        in the manifest first, so that after a lost store ``recover`` does not count it
        as part of the batch again."""
        self.manifests.note_rejected(self.batch.id, document.file_id, code, message,
                                    self.batch.epoch)
        self.store.set_file_result(document.file_id, FileState.BATCHED, DocumentResult(
            entry=document.entry, error_code=code, error_message=message,
            provider_block=block or {}), batch_id=self.batch.id)
        self.changed()

    def publishing(self, key: str) -> None:
        self.manifests.note_published(self.batch.id, key, self.batch.epoch)
        self.store.set_publish_key(self.batch, key)
        self.changed()

    def created(self, remote_id: str) -> None:
        self.manifests.note_remote_id(self.batch.id, remote_id, self.batch.epoch)
        self.store.set_remote_id(self.batch, remote_id)
        self.changed()
