"""A scripted provider for unit tests of the parts above the providers (the state machine,
the sink, recover): no network, no emulator, no worker processes.

It keeps its "remote batches" in memory, like a provider that takes documents one by
one (Clevver's shape): each document sent is noted through the ledger before it goes
(``sending``) and after its answer (``answered``), a document already answered for a
remote batch is never sent there again, and one in doubt abandons that remote batch.
Accept starts a remote batch; ``running_polls`` status answers later it is closed, and
download "signs" each document into the staging folder, where the sink finds it (a
signed copy, or with ``detached`` the original and a ``.p7s`` signature).

Every call goes by its script: ``provider.script["upload"] = [LOST, None]`` answers
the first upload as if its answer was lost and the second normally. An outcome is

* ``None``: answered normally;
* an exception (``TransientError``, ``ProviderError``, ``Abandon``, ``NotSent``, …):
  raised before the call reaches the provider, which does nothing;
* :data:`LOST`: the call takes effect (a remote batch made, a document received, a
  batch started, a remote batch removed), and then its answer is lost on the way back
  (raised as ``TransientError``); in an upload, the answer for the first document sent;
* a function of no arguments: called when the call arrives (to move the test's clock,
  take the lease away, set the stop event), and then the call is answered normally.

Calls past the end of their script are answered normally. Every call is recorded in
``calls``, with the remote batch it named and its outcome.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from folderseal.core.errors import TransientError
from folderseal.core.model import DocumentResult, Output
from folderseal.providers import (
    Abandon,
    BatchView,
    Document,
    Health,
    Ledger,
    Remote,
    RemoteDocument,
    RemoteStatus,
    Steps,
)


class Lost:
    """The outcome of a call that took effect, and whose answer never came back."""

    def __repr__(self) -> str:
        return "LOST"


LOST = Lost()
Outcome = BaseException | Lost | Callable[[], object] | None

SIGNED = b"signed by the scripted provider\n"  # what download puts before each original


@dataclass(frozen=True, slots=True)
class Call:
    """One call the provider received."""

    step: str       # prepare | create | upload | status | accept | download | salvage | delete
    remote: str     # the remote batch it named ("" for prepare, and create's own)
    outcome: str    # "ok", "lost", "hook", or the name of the exception raised


@dataclass
class RemoteBatch:
    """A remote batch as the scripted provider keeps it."""

    id: str
    state: Remote = Remote.NEW
    documents: dict[str, str] = field(default_factory=dict)  # entry → sha256 received
    polls: int = 0   # status answers since it started


class Scripted:
    """A :class:`~folderseal.providers.Provider` that answers from its script."""

    def __init__(self, name: str = "remote", *, steps: Steps | None = None,
                 kind: str = "scripted", status_grace: float = 0.0,
                 max_wait: float = 3600.0, retry_max_seconds: float = 300.0) -> None:
        self.name = name
        self.kind = kind
        self.steps = steps or Steps(remote=True, irrevocable=True, outcome="signed")
        self.max_batch_files: int | None = None
        self.poll_interval = 1.0
        self.max_wait = max_wait
        self.retry_max_seconds = retry_max_seconds
        self.status_grace = status_grace
        self.script: dict[str, list[Outcome]] = {}
        self.calls: list[Call] = []
        self.sends: list[tuple[str, str]] = []          # (remote, entry) of each document sent
        self.remotes: dict[str, RemoteBatch] = {}
        self.running_polls = 0                          # status answers "running" first
        self.rejects: dict[str, tuple[str, str]] = {}   # entry → (code, message) at upload
        self.refusals: dict[str, tuple[str, str]] = {}  # entry → (code, message) at download
        self.detached = False   # download: the original and a signature, not a signed copy
        self.synced = False     # download: outputs marked as fsynced (Output.synced)
        self._made = 0

    # -- what the tests look at ------------------------------------------------------

    def called(self, step: str) -> list[str]:
        """The remote batch each call of ``step`` named, in order."""
        return [c.remote for c in self.calls if c.step == step]

    def sent_to(self, remote_id: str) -> list[str]:
        """The entries sent to ``remote_id``, in order (twice if sent twice)."""
        return [entry for remote, entry in self.sends if remote == remote_id]

    # -- the script ------------------------------------------------------------------

    def _arrive(self, step: str, remote: str) -> bool:
        """Record the call and play its scripted outcome: raise it, run its hook, or say
        (True) that its answer is to be lost once it took effect."""
        queue = self.script.get(step) or []
        outcome = queue.pop(0) if queue else None
        if isinstance(outcome, BaseException):
            self.calls.append(Call(step, remote, type(outcome).__name__))
            raise outcome
        if isinstance(outcome, Lost):
            self.calls.append(Call(step, remote, "lost"))
            return True
        self.calls.append(Call(step, remote, "ok" if outcome is None else "hook"))
        if outcome is not None:
            outcome()
        return False

    @staticmethod
    def _lose(step: str) -> TransientError:
        return TransientError(f"the answer to {step} was lost (scripted)")

    # -- the protocol ----------------------------------------------------------------

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None

    def check(self, network: bool = True) -> Health:
        return Health(verified="scripted")

    def prepare(self, batch: BatchView, ledger: Ledger) -> tuple[str, int] | None:
        if self._arrive("prepare", ""):
            raise self._lose("prepare")
        return None

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        lost = self._arrive("create", "")
        self._made += 1
        remote = RemoteBatch(f"r{self._made}")
        self.remotes[remote.id] = remote
        if lost:
            raise self._lose("create")
        return remote.id

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        lost = self._arrive("upload", remote_id)
        remote = self.remotes[remote_id]
        for document in batch.documents:
            if document.remote is not None and document.remote.batch == remote_id:
                if document.remote.in_doubt:
                    raise Abandon(f"the answer for {document.entry} was lost", lost_answer=True)
                continue  # answered already: never sent twice
            if document.entry in self.rejects:
                ledger.reject(document, *self.rejects[document.entry])
                continue
            data = self._read(batch, document)
            ledger.sending(document, remote_id)
            self.sends.append((remote_id, document.entry))
            remote.documents[document.entry] = hashlib.sha256(data).hexdigest()
            remote.state = Remote.UPLOADED
            if lost:
                raise self._lose("upload")
            ledger.answered(document, RemoteDocument(
                batch=remote_id, id=f"{remote_id}-d{len(remote.documents)}",
                checksum=remote.documents[document.entry]))

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        """Every document answered for this remote batch with its own sha256, none in
        doubt, and the remote batch holds exactly them."""
        return status.state in (Remote.NEW, Remote.UPLOADED) and \
            sorted(status.documents) == sorted(d.entry for d in batch.documents) and all(
                d.remote is not None and d.remote.batch == status.batch and not d.remote.in_doubt
                and d.remote.checksum == d.sha256 for d in batch.documents)

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus:
        if self._arrive("status", remote_id):
            raise self._lose("status")
        remote = self.remotes.get(remote_id)
        if remote is None:
            return RemoteStatus(Remote.GONE, detail="not found", batch=remote_id)
        if remote.state == Remote.RUNNING:
            remote.polls += 1
            if remote.polls > self.running_polls:
                remote.state = Remote.CLOSED
        return RemoteStatus(remote.state, documents=tuple(sorted(remote.documents)),
                            detail=str(remote.state), batch=remote_id)

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        lost = self._arrive("accept", remote_id)
        self.remotes[remote_id].state = Remote.RUNNING
        if lost:
            raise self._lose("accept")

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        if self._arrive("download", remote_id):
            raise self._lose("download")
        batch.staging.mkdir(parents=True, exist_ok=True)
        results = []
        for document in batch.documents:
            if document.entry in self.refusals:
                code, message = self.refusals[document.entry]
                results.append(DocumentResult(entry=document.entry, error_code=code,
                                              error_message=message))
                continue
            results.append(DocumentResult(
                entry=document.entry, provider_document=f"{remote_id}/{document.entry}",
                outputs=self._outputs(batch, document)))
        return results

    def _outputs(self, batch: BatchView, document: Document) -> tuple[Output, ...]:
        """The document "signed", staged: a signed copy; or (``detached``) the original
        unchanged and a detached signature beside it."""
        data = self._read(batch, document)
        if self.detached:
            signature = SIGNED + hashlib.sha256(data).hexdigest().encode()
            staged = batch.staging / f"{document.entry}.p7s"
            staged.write_bytes(signature)
            return (Output(role="original", staged="", suffix="", sha256=document.sha256,
                           bytes=len(data), synced=self.synced),
                    Output(role="signature", staged=str(staged), suffix=".p7s",
                           sha256=hashlib.sha256(signature).hexdigest(),
                           bytes=len(signature), synced=self.synced))
        signed = SIGNED + data
        staged = batch.staging / document.entry
        staged.write_bytes(signed)
        return (Output(role="signed", staged=str(staged), suffix="",
                       sha256=hashlib.sha256(signed).hexdigest(), bytes=len(signed)),)

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        if self._arrive("salvage", remote_id):
            raise self._lose("salvage")
        return []

    def delete(self, batch: BatchView, remote_id: str) -> None:
        lost = self._arrive("delete", remote_id)
        self.remotes.pop(remote_id, None)
        if lost:
            raise self._lose("delete")

    def shown(self, key: str) -> str:
        return key

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        return 0

    @staticmethod
    def _read(batch: BatchView, document: Document) -> bytes:
        """The document's bytes, read through the state machine's own opener (which
        refuses anything but the claimed file) when it gives one."""
        if batch.open_document is None:
            return (batch.files_dir / document.entry).read_bytes()
        fd = batch.open_document(document)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
