"""The store's records of ``folderseal retry`` (:mod:`folderseal.publish.retrying`): its intent,
its end (a file back in the inbox, or back in its reopened batch), its undoing, what is
known of a failure's original in the errors folder, and a waiting batch woken."""

from __future__ import annotations

import json
from typing import Any

from folderseal.core.errors import StateConflict
from folderseal.core.model import BatchRecord, BatchState, FileRecord, FileState
from folderseal.store.base import StoreBase


class RetryRecords(StoreBase):
    """What a retry writes into the store."""

    def reopen_batch(self, batch: BatchRecord, to_state: BatchState) -> None:
        """A failed (or finished) batch goes back to ``to_state`` (retry), due at once."""
        with self.transaction():
            self._guarded("reopen_batch", StateConflict,
                          f"batch {batch.id} is no longer {batch.state}, or is being worked on",
                          id=batch.id, from_state=batch.state, to_state=to_state,
                          now=self._now())
            self.event("batch.state", batch_id=batch.id, from_state=batch.state,
                       to_state=to_state, detail="retry")

    def wake_batch(self, batch_id: str) -> bool:
        """A batch waiting for its next attempt is due now; False if it was not waiting."""
        with self.transaction():
            if self._run("wake_batch", id=batch_id, now=self._now()).rowcount != 1:
                return False
            self.event("batch.woken", batch_id=batch_id, detail="retry")
        return True

    def begin_retry(self, plans: list[tuple[FileRecord, dict[str, Any]]]) -> None:
        """Record a retry's intent, in one transaction: each failed file is RETRYING and
        its outputs say where it goes (``plan``, role ``retry``)."""
        with self.transaction():
            for record, plan in plans:
                outputs = [o for o in record.outputs if o.get("role") != "retry"] + [plan]
                self._guarded("begin_retry", StateConflict,
                              f"file {record.id} is not {record.state} any more", id=record.id,
                              from_state=record.state, outputs=json.dumps(outputs),
                              now=self._now())
                self.event("file.state", file_id=record.id, batch_id=record.batch_id,
                           from_state=record.state, to_state=FileState.RETRYING,
                           detail=f"retry into the {plan['to']}")

    def finish_batch_retry(self, batch: BatchRecord, file_ids: list[str],
                           to_state: BatchState) -> None:
        """The retried files wait in their batch again, and the batch is due at once."""
        with self.transaction():
            for file_id in file_ids:
                self.reopen_file(file_id, batch.id)
            self.reopen_batch(batch, to_state)

    def reopen_file(self, file_id: str, batch_id: str) -> None:
        """A retried file of a batch waits in that batch again."""
        with self.transaction():
            self._guarded("reopen_file", StateConflict, f"file {file_id} is not being retried",
                          id=file_id, now=self._now())
            self.event("file.state", file_id=file_id, batch_id=batch_id,
                       from_state=FileState.RETRYING, to_state=FileState.BATCHED,
                       detail="retry")

    def undo_retry(self, file_ids: list[str], why: str) -> None:
        """Retried files whose moves were undone are failed again, in one transaction."""
        with self.transaction():
            for file_id in file_ids:
                self.set_file_state(file_id, FileState.RETRYING, FileState.FAILED,
                                    detail=f"retry undone: {why}")

    def set_error_place(self, record: FileRecord, place: dict[str, Any]) -> None:
        """Record what is known now of a failure's original in the errors folder (a newer
        hint, a file seen at its place that is not it, the folder's id) while it is FAILED
        or CLEARED."""
        outputs = [place if o.get("role") == "error" else o for o in record.outputs]
        with self.transaction():
            self._run("set_error_place", id=record.id, outputs=json.dumps(outputs))
