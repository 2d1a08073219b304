"""The emulator's batches: in memory, with their files under the data directory.

One lock guards every batch; it is held only for bookkeeping, never for file I/O or
signing, so a 1 GiB upload to one batch does not stall status calls on another.

Layout of the data directory::

    journal.jsonl              one line per document processed (the evidence tests read)
    seal/seal.p12, seal.pass   the trial seal the emulator signs with
    batches/<id>/incoming/     uploads being received and unpacked
    batches/<id>/docs/<doc>    each document as uploaded
    batches/<id>/signed/<doc>  signed PDFs and detached signatures
    batches/<id>/package.zip   the package, once the batch is CLOSED

State is not persisted: a restarted emulator knows no batches. It does go on numbering
after the highest batch id found on disk or in the journal, so a client that still
remembers a batch from before the restart never finds a different batch under its id.
"""

from __future__ import annotations

import enum
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from folderseal.providers.emulation.faults import BatchFaults
from folderseal.providers.emulation.httpd import ApiError
from folderseal.providers.emulation.journal import Journal, log_event, log_to

__all__ = [
    "FIRST_BATCH_ID",
    "ApiError",
    "Batch",
    "Document",
    "Registry",
    "SealJournal",
    "Status",
    "log_event",
    "log_to",
]

FIRST_BATCH_ID = 2123  # the id in the documentation's examples


class Status(enum.IntEnum):
    """Batch statuses, numbered as in the newer of the two published tables."""

    NEW = 0
    UPLOADED = 1
    ACCEPTED = 2
    READY = 3
    IN_PROGRESS = 4
    FINISHING = 5
    CLOSED = 6
    DELETED = 7


def timestamp() -> str:
    """SEAL's date format: ``YYYY-MM-DD HH:MM:SS``, no zone (UTC here)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def yes_no(value: bool) -> str:
    """SEAL's booleans are the strings "true" and "false"."""
    return "true" if value else "false"


@dataclass(slots=True)
class Document:
    """One uploaded file of a batch."""

    id: int
    name: str
    path: Path
    sha256: str
    created: str
    signed: bool = False
    # Package entries (name, file) once signed; empty when not signed.
    outputs: list[tuple[str, Path]] = field(default_factory=list)

    def status_json(self) -> dict[str, Any]:
        """The document as BatchStatus shows it (``fileName``, string booleans)."""
        return {
            "id": str(self.id),
            "signed": yes_no(self.signed),
            "fileName": self.name,
            "signingResult_Success": yes_no(self.signed),
        }

    def upload_json(self, batch_id: int) -> dict[str, Any]:
        """The document as the upload answer shows it (``name``, as in the docs' example)."""
        return {
            "id": str(self.id),
            "counterpartyId": "1",
            "name": self.name,
            "signed": yes_no(self.signed),
            "hash": None,
            "signature": None,
            "batchId": batch_id,
            "creationDate": self.created,
            "isZip": "true",
            "tsaId": "1",
        }


@dataclass(slots=True)
class Batch:
    """One batch: its status, its documents and where its files are."""

    id: int
    process_id: int
    created: str
    directory: Path
    status: Status = Status.NEW
    documents: list[Document] = field(default_factory=list)
    faults: BatchFaults = field(default_factory=BatchFaults)
    package: Path | None = None
    next_document: int = 1
    shown: dict[str, Any] | None = None   # what BatchStatus shows while a change is "lagging"
    shown_until: float = 0.0

    def status_json(self) -> dict[str, Any]:
        """BatchStatus and BatchDeleteCache: numeric id, status NAME, string booleans."""
        return {
            "id": self.id,
            "status": self.status.name,
            "creationDate": self.created,
            "documents": [d.status_json() for d in self.documents],
        }


class SealJournal(Journal):
    """``journal.jsonl``: one JSON object per processed document, each line fsynced."""

    def record(self, batch: int, document: Document, signed: bool) -> None:
        """Append one line and make it durable before returning."""
        self.append(
            {
                "batch": batch,
                "document": str(document.id),
                "name": document.name,
                "sha256": document.sha256,
                "signed": signed,
                "at": time.time(),
            }
        )

    def highest_batch(self) -> int:
        """The highest batch id in the journal, 0 if none (ids go on after a restart)."""
        highest = 0
        for entry in self.entries():
            try:
                highest = max(highest, int(entry["batch"]))
            except (ValueError, KeyError, TypeError):
                continue
        return highest


class Registry:
    """Every batch of this run, behind one lock."""

    def __init__(self, data_dir: Path, journal: SealJournal, lag: float = 0.0) -> None:
        self.lag = lag
        self.accept_calls: list[int] = []  # every AcceptBatch, refused ones too
        self.root = data_dir / "batches"
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal = journal
        self.lock = threading.Lock()
        self._batches: dict[int, Batch] = {}
        on_disk = [int(p.name) for p in self.root.iterdir() if p.name.isdigit()]
        self._next_id = max([FIRST_BATCH_ID - 1, journal.highest_batch(), *on_disk]) + 1

    def create(self, process_id: int) -> Batch:
        """A new batch in NEW, with its directory."""
        with self.lock:
            batch_id = self._next_id
            self._next_id += 1
            batch = Batch(
                id=batch_id,
                process_id=process_id,
                created=timestamp(),
                directory=self.root / str(batch_id),
            )
            self._batches[batch_id] = batch
        for sub in ("incoming", "docs", "signed"):
            (batch.directory / sub).mkdir(parents=True, exist_ok=True)
        return batch

    def get(self, batch_id: int) -> Batch:
        """The batch, or ApiError 404. Callers hold the lock when they read its fields."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"batch {batch_id} not found")
        return batch

    def snapshot(self, batch_id: int) -> dict[str, Any]:
        """The BatchStatus JSON of a batch, taken under the lock.

        With ``lag``, an upload or accept shows in the status only ``lag`` seconds after
        it was answered, as on a server that processes them asynchronously (202).
        """
        with self.lock:
            batch = self.get(batch_id)
            if batch.shown is not None and time.monotonic() < batch.shown_until:
                return batch.shown
            return batch.status_json()

    def _hold_view(self, batch: Batch) -> None:
        if self.lag > 0:
            batch.shown = batch.status_json()
            batch.shown_until = time.monotonic() + self.lag

    def check_uploadable(self, batch_id: int) -> Batch:
        """The batch, if a package may be uploaded to it now (NEW or UPLOADED)."""
        with self.lock:
            return self._uploadable(batch_id)

    def _uploadable(self, batch_id: int) -> Batch:
        batch = self.get(batch_id)
        if batch.status not in (Status.NEW, Status.UPLOADED):
            raise ApiError(
                409, f"batch {batch_id} is {batch.status.name}; upload needs NEW or UPLOADED"
            )
        return batch

    def add_documents(
        self, batch_id: int, files: list[tuple[str, Path, str]]
    ) -> list[Document]:
        """Add unpacked files (name, temp path, sha256) as documents; NEW/UPLOADED → UPLOADED.

        The real server adds the files of every upload, so uploading twice duplicates
        the documents; this is emulated on purpose.
        """
        with self.lock:
            # Checked again: the batch may have been accepted or deleted while unpacking.
            batch = self._uploadable(batch_id)
            self._hold_view(batch)
            added: list[Document] = []
            for name, temp, sha256 in files:
                doc_id = batch.next_document
                batch.next_document += 1
                final = batch.directory / "docs" / str(doc_id)
                temp.rename(final)  # same directory tree: atomic, and cheap under the lock
                document = Document(doc_id, name, final, sha256, timestamp())
                batch.documents.append(document)
                added.append(document)
            batch.status = Status.UPLOADED
            return added

    def accept(self, batch_id: int, decide: Callable[[int], BatchFaults]) -> Batch:
        """UPLOADED → ACCEPTED (else ApiError 409); the caller starts the signing.

        ``decide`` draws the batch's faults from its document count, only once the
        accept is certain, so refused accepts consume no random numbers.
        """
        with self.lock:
            self.accept_calls.append(batch_id)
            batch = self.get(batch_id)
            if batch.status is not Status.UPLOADED:
                raise ApiError(
                    409, f"batch {batch_id} is {batch.status.name}; only UPLOADED can be accepted"
                )
            self._hold_view(batch)
            batch.faults = decide(len(batch.documents))
            batch.status = Status.ACCEPTED
            return batch

    def advance(self, batch: Batch, to: Status) -> bool:
        """Move a batch being signed on to ``to``; False if it was deleted meanwhile."""
        with self.lock:
            if batch.status is Status.DELETED:
                return False
            batch.status = to
            return True

    def delete(self, batch_id: int) -> dict[str, Any]:
        """Mark DELETED and remove the files; answer the BatchDeleteCache JSON."""
        with self.lock:
            batch = self.get(batch_id)
            batch.status = Status.DELETED
            batch.package = None
            answer = batch.status_json()
        # Outside the lock: removing a 1 GiB batch must not stall other requests. A
        # download already streaming keeps its open file (unlinked files stay readable).
        shutil.rmtree(batch.directory, ignore_errors=True)
        return answer
