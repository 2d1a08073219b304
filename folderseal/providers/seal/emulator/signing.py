"""Signing an accepted batch in the background, as the server would.

Each accepted batch gets a thread that walks it through ACCEPTED → READY →
IN_PROGRESS → FINISHING → CLOSED, waiting ``step_delay`` seconds before each step.
Documents are signed during IN_PROGRESS with folderseal's own signer:

* a PDF (``.pdf``, any case) gets an embedded PAdES signature; the package holds the
  signed PDF under the uploaded name;
* any other file is put in the package unchanged under its name, with a detached
  CAdES signature beside it as ``<name>.p7s``. What SEAL returns for non-PDFs is not
  documented; a detached signature next to the unchanged file is the safest form (the
  original bytes survive) and is what folderseal's local signer produces.

A document that cannot be signed (a damaged PDF, or the ``fail-document`` fault) gets
``signingResult_Success: "false"`` and is left out of the package; the batch still
closes, because SEAL has no failed batch status. Under the ``never-close`` fault the
batch stops at IN_PROGRESS and nothing is signed. Every document signed or failed is
written to the journal once, after its status changed.

The emulator signs with a self-signed trial seal kept in ``<data>/seal``, made on
first start and reused afterwards; no time-stamp server is involved.
"""

from __future__ import annotations

import threading
from pathlib import Path

from folderseal.core.errors import FileRejected
from folderseal.providers.seal.emulator.package import write_package
from folderseal.providers.seal.emulator.state import (
    Batch,
    Document,
    Registry,
    Status,
    log_event,
)
from folderseal.signing import Credentials, make_trial_seal, sign_detached, sign_pdf
from folderseal.signing.trial import PASSWORD_NAME, PKCS12_NAME

__all__ = ["BatchSigner", "load_or_make_credentials"]


def load_or_make_credentials(data_dir: Path) -> Credentials:
    """The trial seal in ``<data_dir>/seal``, made there if missing."""
    directory = data_dir / "seal"
    if not (directory / PKCS12_NAME).exists() or not (directory / PASSWORD_NAME).exists():
        trial = make_trial_seal(directory)
        return Credentials.from_pkcs12(trial.pkcs12_path, trial.password())
    password = (directory / PASSWORD_NAME).read_bytes().strip()
    return Credentials.from_pkcs12(directory / PKCS12_NAME, password)


class BatchSigner:
    """Runs one background thread per accepted batch."""

    def __init__(self, registry: Registry, credentials: Credentials, step_delay: float) -> None:
        self.registry = registry
        self.credentials = credentials
        self.step_delay = step_delay
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, batch: Batch) -> None:
        """Start signing an accepted batch."""
        thread = threading.Thread(
            target=self._run, args=(batch,), name=f"seal-batch-{batch.id}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every batch thread to stop at its next step, and wait for them a while."""
        self.stopping.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _step(self, batch: Batch, to: Status) -> bool:
        # Event.wait doubles as an interruptible sleep: stop() ends the wait at once.
        if self.stopping.wait(self.step_delay):
            return False
        return self.registry.advance(batch, to)

    def _run(self, batch: Batch) -> None:
        try:
            self._sign_batch(batch)
        except Exception as exc:  # a thread must not die silently; the batch stays put
            if batch.status is not Status.DELETED:
                log_event("emulator.batch_failed", batch=batch.id, error=repr(exc))

    def _sign_batch(self, batch: Batch) -> None:
        if not (self._step(batch, Status.READY) and self._step(batch, Status.IN_PROGRESS)):
            return
        if batch.faults.never_close:
            return  # stays IN_PROGRESS: the client's deadline has to catch this
        with self.registry.lock:
            documents = list(batch.documents)
        signed_dir = batch.directory / "signed"
        for index, document in enumerate(documents):
            if self.stopping.is_set():
                return
            outputs: list[tuple[str, Path]] | None = None
            if index not in batch.faults.failed_documents:
                outputs = self._sign_document(batch, document, signed_dir)
            with self.registry.lock:
                if batch.status is Status.DELETED:
                    return
                document.signed = outputs is not None
                document.outputs = outputs or []
            self.registry.journal.record(batch.id, document, outputs is not None)
        if not self._step(batch, Status.FINISHING):
            return
        entries = [entry for document in documents for entry in document.outputs]
        package = batch.directory / "package.zip"
        write_package(package, entries, batch.faults.unsafe_entry)
        with self.registry.lock:
            if batch.status is Status.DELETED:
                return
            batch.package = package
        self._step(batch, Status.CLOSED)

    def _sign_document(
        self, batch: Batch, document: Document, signed_dir: Path
    ) -> list[tuple[str, Path]] | None:
        """Sign one document; its package entries, or None if it cannot be signed."""
        try:
            if document.name.lower().endswith(".pdf"):
                out = signed_dir / f"{document.id}.pdf"
                with document.path.open("rb") as src, out.open("w+b") as dst:
                    sign_pdf(self.credentials, src, dst)
                return [(document.name, out)]
            with document.path.open("rb") as src:
                signature = sign_detached(self.credentials, src)
            p7s = signed_dir / f"{document.id}.p7s"
            p7s.write_bytes(signature.der)
            return [(document.name, document.path), (document.name + ".p7s", p7s)]
        except FileRejected as exc:
            reason = exc.code
        except Exception as exc:  # the real server just says "false"; say why on stderr
            if batch.status is Status.DELETED:
                return None  # its files were removed under us; nothing to report
            reason = repr(exc)
        log_event("emulator.not_signed", batch=batch.id, document=document.id, reason=reason)
        return None
