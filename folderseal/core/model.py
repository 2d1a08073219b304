"""The data passed between stages, and the states of batches and files.

A batch (one per batch) moves through states that each name a completed step, so a
restart knows the next step from the state alone::

    BATCHED → CREATED → UPLOADED → ACCEPTING → ACCEPTED → CLOSED → DOWNLOADED
            → DELIVERED → CLEANED              (or FAILED from any state before DELIVERED)

A file moves ``CLAIMED → BATCHED → READY | REJECTED → PUBLISHED → DONE``, or ends
``FAILED`` (in the errors folder with a record). What may follow a failure::

    FAILED ⇄ CLEARED        its original left the errors folder (removed or moved away
                            by hand, or replaced by another file); back to FAILED when
                            the very file is there again
    FAILED | CLEARED → RETRYING → RETRIED    `folderseal retry` put it back into the inbox
                              └─→ BATCHED     … or back into its remote batch
                              └─→ FAILED      … or could not move it, and undid the moves

``RETRYING`` is a retry's intent, recorded before any file moves (where each goes is in
its outputs, role ``retry``): a crash or a failed commit leaves it, and the next
``folderseal retry`` or the daemon's reconcile of the errors folder finishes the moves
(or undoes them). See :mod:`folderseal.publish.retrying`.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass, field
from typing import Any


class BatchState(enum.StrEnum):
    BATCHED = "BATCHED"
    CREATED = "CREATED"
    UPLOADED = "UPLOADED"
    ACCEPTING = "ACCEPTING"
    ACCEPTED = "ACCEPTED"
    CLOSED = "CLOSED"
    DOWNLOADED = "DOWNLOADED"
    DELIVERED = "DELIVERED"
    CLEANED = "CLEANED"
    FAILED = "FAILED"


class FileState(enum.StrEnum):
    CLAIMED = "CLAIMED"
    BATCHED = "BATCHED"
    READY = "READY"
    REJECTED = "REJECTED"
    PUBLISHED = "PUBLISHED"
    DONE = "DONE"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    RETRIED = "RETRIED"
    CLEARED = "CLEARED"


# Claimed and not yet delivered to the outbox (or the errors folder): "in flight", what
# max_in_flight_files limits (the store's count_in_flight).
NOT_DELIVERED = (FileState.CLAIMED, FileState.BATCHED, FileState.READY, FileState.REJECTED)
# Outputs and sidecars durable; PUBLISHED waits only for its original to be removed.
DELIVERED = (FileState.PUBLISHED, FileState.DONE)


def path_text(raw: str) -> str:
    """A file name fit for JSON and logs: invalid UTF-8 bytes become ``\\xNN``."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Output:
    """One file a provider produced for a source file, staged before publishing."""

    role: str          # signed | original | signature
    # Path of the staged file (absolute), or "" for the original: the claimed file itself
    # is published (a provider that returns the file unchanged: only an "original").
    staged: str
    suffix: str        # appended to the primary output name ("" for the primary, ".p7s")
    sha256: str
    bytes: int
    # The provider fsynced the file after it was last written (a staged output, or an
    # original the local signer sealed): publishing then syncs only its new name. False
    # (an original as the writer left it, or a result saved before this was recorded):
    # publishing fsyncs the file before it names it.
    synced: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "staged": self.staged, "suffix": self.suffix,
                "sha256": self.sha256, "bytes": self.bytes, "synced": self.synced}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Output:
        return cls(role=data["role"], staged=data["staged"], suffix=data["suffix"],
                   sha256=data["sha256"], bytes=int(data["bytes"]),
                   synced=data.get("synced") is True)


@dataclass(frozen=True, slots=True)
class Signer:
    """Who sealed a file: the certificate its signature was made with (the sidecar's
    ``signer``)."""

    subject: str               # RFC 4514, as `openssl x509 -nameopt RFC2253` prints it
    issuer: str
    serial_number: str         # upper-case hex, as `openssl x509 -serial` prints it
    fingerprint_sha256: str    # lower-case hex of the certificate's DER
    self_signed: bool

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "issuer": self.issuer,
                "serial_number": self.serial_number,
                "fingerprint_sha256": self.fingerprint_sha256, "self_signed": self.self_signed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signer:
        return cls(subject=data["subject"], issuer=data["issuer"],
                   serial_number=data["serial_number"],
                   fingerprint_sha256=data["fingerprint_sha256"],
                   self_signed=bool(data["self_signed"]))


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """What the provider says about one document of a batch."""

    entry: str
    outputs: tuple[Output, ...] = ()
    error_code: str = ""
    error_message: str = ""
    provider_document: str = ""
    signer: Signer | None = None
    # The provider's own proof, merged into the sidecar's "provider" object under its
    # key: {"receipt": {…}} (Clevver) or {"report": {…}} (Centrapay).
    provider_block: dict[str, Any] = field(default_factory=dict)
    # Not ready yet (a receipt without its txid): asked again at the next poll; after
    # the provider's max_wait it fails with error_code/error_message.
    pending: bool = False

    @property
    def ok(self) -> bool:
        return not self.error_code and not self.pending

    def to_json(self) -> str:
        return json.dumps({
            "entry": self.entry, "outputs": [o.to_json() for o in self.outputs],
            "error_code": self.error_code, "error_message": self.error_message,
            "provider_document": self.provider_document,
            "signer": self.signer.to_json() if self.signer else None,
            "provider_block": self.provider_block, "pending": self.pending,
        })

    @classmethod
    def from_json(cls, text: str) -> DocumentResult:
        return cls.from_data(json.loads(text))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DocumentResult:
        """The result ``to_json`` wrote, parsed (keys beside its own are ignored)."""
        # signer, provider_block and pending are absent in results stored before them.
        signer = data.get("signer")
        return cls(entry=data["entry"],
                   outputs=tuple(Output.from_json(o) for o in data["outputs"]),
                   error_code=data["error_code"], error_message=data["error_message"],
                   provider_document=data.get("provider_document", ""),
                   signer=Signer.from_json(signer) if signer else None,
                   provider_block=data.get("provider_block") or {},
                   pending=bool(data.get("pending", False)))


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A claimed source file as the store knows it."""

    id: str
    folder: str
    source: str        # relative to the inbox; os.fsdecode'd (surrogateescape)
    state: FileState
    dev: int
    ino: int
    size: int
    mtime_ns: int
    sha256: str | None
    batch_id: str | None
    entry: str | None
    attempts: int
    result: DocumentResult | None
    outputs: tuple[dict[str, Any], ...]
    error_code: str | None
    error_message: str | None
    seen_at: float
    claimed_at: float

    @property
    def source_text(self) -> str:
        return path_text(self.source)

    @property
    def source_bytes(self) -> bytes:
        return os.fsencode(self.source)


@dataclass(frozen=True, slots=True)
class Event:
    """A batch's transition (``file_id`` None) or one of its files' (from the store)."""

    kind: str                  # batch.state | file.batched | file.state
    file_id: str | None
    state: str | None          # the state it went to
    at: float


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch and where it stands in the provider's lifecycle."""

    id: str
    folder: str
    provider: str
    state: BatchState
    claimed_by: str | None
    lease_until: float | None
    next_attempt_at: float | None
    attempts: int
    remote_id: str | None
    package_sha256: str | None
    package_bytes: int | None
    failed_step: str | None
    error_code: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    publish_key: str | None = None   # what create published for the provider to fetch
    epoch: int = 0                   # bumped by each acquisition of its lease
    takeovers: int = 0               # acquisitions while another holder's lease had lapsed
