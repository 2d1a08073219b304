"""The provider protocol: one lifecycle for every provider.

``prepare → create → upload → accept → status (until closed) → download → delete``.
A provider that has no such step does nothing in it (the local signer has no remote
batch to create). Each provider declares its :class:`Steps`: whether it keeps a
remote batch, whether its accept step is the point of no return (the state machine stores
ACCEPTING before it, for every provider) and what a delivered file is. Providers know
nothing about the store or the folders: the state machine drives them and records every
step; what a provider reports back during a step goes through the :class:`Ledger`
the state machine hands it (attempts, and each document's remote id), recorded durably
*before* (an intent) and *after* (an answer) the call it is about.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from folderseal.core.configbase import ProviderSection
from folderseal.core.model import DocumentResult

# In the warning of a provider whose seal proves a file unchanged but not who sealed it;
# `status` and the status page show such a warning as a banner.
NOT_QUALIFIED = "sealing with a self-signed trial certificate: NOT QUALIFIED"


class Remote(enum.StrEnum):
    """Where a remote batch stands, in the provider's own terms mapped to ours."""

    NEW = "new"              # created, no documents yet
    UPLOADED = "uploaded"    # documents there, not accepted
    RUNNING = "running"      # accepted, being signed
    CLOSED = "closed"        # done; ready for download
    FAILED = "failed"        # the provider says the batch failed (it was started)
    GONE = "gone"            # the provider does not know the batch (any more)


@dataclass(frozen=True, slots=True)
class Steps:
    """What a provider's lifecycle is, in the terms the state machine decides by."""

    remote: bool              # it keeps a remote batch: its ids are noted beside the batch
    #                           and `recover` asks the provider about them
    irrevocable: bool = True  # its accept step is the point of no return: once ACCEPTING
    #                           is stored, the files may have been signed/stored/loaded and
    #                           are never submitted again (False: repeating it is harmless)
    outcome: str = "signed"   # what a delivered file is: signed | stored | loaded
    # Error codes of files that failed alone while their batch went on, as `retry` reads
    # them: the provider has the file and is only asked again (never sent again)…
    ask_again: frozenset[str] = frozenset()
    # …or the provider surely never took the file: it goes back into the inbox.
    not_sent: frozenset[str] = frozenset()
    # Accept itself makes the remote batch (Centrapay: creating is starting): before it
    # there is none (create returns ""), and an accept whose answer was lost cannot be
    # looked up, so its files fail as OUTCOME_UNKNOWN and are never sent again unasked.
    accept_creates: bool = False
    # Create publishes the file where the provider fetches it (Centrapay): ``delete``
    # removes it once the batch is done or failed, and ``tidy`` removes, at start,
    # whatever no batch names any more.
    publishes: bool = False
    # Its result of a delivered file may report records it could not load (Centrapay's
    # report): `status` lists those files.
    reports_records: bool = False


# The code of files whose provider may or may not have taken them, with no way to ask:
# `folderseal retry` sends them again only with --force and their explicit id.
OUTCOME_UNKNOWN = "outcome_unknown"


@dataclass(frozen=True, slots=True)
class RemoteDocument:
    """What a provider answered for one document sent to one remote batch."""

    batch: str                # the remote batch it was sent to
    id: str | None            # the provider's id for it; None: sent, the answer lost
    #                           (in doubt); "": surely not taken (sent again)
    checksum: str = ""        # what the provider says it holds (sha256 hex), if it says

    @property
    def in_doubt(self) -> bool:
        return self.id is None

    def to_json(self) -> dict[str, Any]:
        """As the store (``files.remote_document``) and the batch manifest keep it."""
        return {"batch": self.batch, "id": self.id, "checksum": self.checksum}

    @classmethod
    def from_json(cls, note: dict[str, Any] | None) -> RemoteDocument | None:
        if not note:
            return None
        found = note.get("id")
        return cls(batch=str(note.get("batch") or ""),
                   id=found if isinstance(found, str) else None,
                   checksum=str(note.get("checksum") or ""))


@dataclass(frozen=True, slots=True)
class Document:
    """One file of a batch, as a provider sees it."""

    entry: str            # flat, ASCII-safe name in the batch folder and package
    file_id: str
    sha256: str
    size: int
    dev: int
    ino: int
    attempts: int         # attempts made before this step
    remote: RemoteDocument | None = None   # what was sent to the current remote batch

    @property
    def is_pdf(self) -> bool:
        return self.entry.lower().endswith(".pdf")


@dataclass(frozen=True, slots=True)
class BatchView:
    """What a provider is told about a batch."""

    id: str
    folder: str
    documents: tuple[Document, ...]
    files_dir: Path             # batches/<id>/ in the work folder: the entries
    package: Path | None        # where prepare may keep what goes up (SEAL: the flat
    #                             ZIP); removed by the state machine when the batch is done
    staging: Path               # where this holder stages results (batches/views.Staging)
    # Opens a document's file for reading (a file descriptor the caller closes); refuses
    # anything but the claimed file.
    open_document: Callable[[Document], int] | None = None
    # The (sha256, bytes) an earlier prepare made, as recorded with the batch: prepare
    # makes it again when what is on disk no longer matches (a crash or a disk tore it).
    prepared: tuple[str, int] | None = None
    # The name or key create last published the batch's file under ("" none), as
    # recorded (Ledger.publishing) before it was published.
    published: str = ""
    # Fleet mode: the staging folders of the batch's earlier holders (lease epochs),
    # newest first, to read (never write) what they fetched or signed: used only once
    # its sha256 checks out. Empty on one node, where every turn stages in ``staging``.
    staged_before: tuple[Path, ...] = ()
    # The mode the folder publishes files with: a provider that makes its outputs with
    # it spares publishing a chmod (and the sync that must follow one).
    file_mode: int = 0o644

    @property
    def staged_in(self) -> tuple[Path, ...]:
        """Every folder the batch's results may be staged in, this holder's first."""
        return (self.staging, *self.staged_before)

    @property
    def prepared_in(self) -> tuple[Path, ...]:
        """Every place an earlier prepare may have left what goes up, this holder's
        first: in fleet mode ``package`` is in ``staging``, and each earlier holder's
        is under the same name in its own staging folder."""
        if self.package is None:
            return ()
        return (self.package, *(folder / self.package.name for folder in self.staged_before))


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    state: Remote
    documents: tuple[str, ...] = ()
    detail: str = ""
    trusted: bool = True   # False when the state was read from a number, not a name
    progress: float | None = None   # 0–100 when the provider says
    batch: str = ""        # the remote batch this is the status of (see ask_status)


class Abandon(Exception):
    """Raised by a step before accept: this remote batch may not hold exactly what was
    sent, so it is abandoned (never accepted) and the files go to a new one.

    ``lost_answer``: an answer was lost (the network's fault); such abandons do not use
    up the limit on remote batches a batch may abandon. Otherwise the provider showed
    something other than what was sent, and the limit applies.
    """

    def __init__(self, why: str, *, lost_answer: bool) -> None:
        super().__init__(why)
        self.why = why
        self.lost_answer = lost_answer


@dataclass(frozen=True, slots=True)
class Health:
    """What a provider's check found, in the provider's own words; the caller names the
    provider. What must be fixed is raised as ConfigError instead."""

    verified: str = ""               # what was proven ("" when nothing was tried)
    warnings: tuple[str, ...] = ()
    unreachable: str = ""            # why the provider could not be asked, and what to do


class Ledger(Protocol):
    """The state machine's ledger, handed to the steps that send or sign file by file."""

    def begin(self, documents: list[Document]) -> list[int]:
        """Count an attempt at each document durably before it is made; the counts."""

    def forgive(self, documents: list[Document]) -> None:
        """Take back attempts that ended in a transient failure (not the files' fault)."""

    def stopping(self) -> bool:
        """True when the daemon is shutting down: finish the current file, then return."""

    def sending(self, document: Document, remote_id: str) -> None:
        """Record, durably, that ``document`` is about to be sent to ``remote_id``
        (until :meth:`answered`, the document is in doubt there)."""

    def answered(self, document: Document, remote: RemoteDocument) -> None:
        """Record the provider's answer for a document, durably (store and work folder)."""

    def reject(self, document: Document, code: str, message: str,
               block: dict[str, Any] | None = None) -> None:
        """Take a document out of the batch as failed (it goes to errors with the reason
        when the batch is delivered or fails); the rest of the batch goes on. ``block``
        (``{"report": {…}}``) goes into the error record's provider object."""

    def publishing(self, key: str) -> None:
        """Record, durably, the name or key the batch's file is about to be published
        under, before any byte of it is (so that nothing published is ever unnamed)."""

    def created(self, remote_id: str) -> None:
        """Record, durably, the remote batch an accept that creates (Steps.accept_creates)
        was answered with: beside the batch in the work folder first, then in the store."""


Attempts = Ledger  # the name the local signer knows it by


class Provider(Protocol):
    name: str
    kind: str
    steps: Steps
    max_batch_files: int | None   # a cap on a batch's files (None: the folder's own)
    poll_interval: float
    max_wait: float
    retry_max_seconds: float   # the longest pause between retries of a failing step
    status_grace: float        # how long an upload or accept may take to show in status

    def start(self) -> None: ...
    def close(self) -> None: ...
    def check(self, network: bool = True) -> Health: ...
    def prepare(self, batch: BatchView, ledger: Ledger) -> tuple[str, int] | None:
        """Before create: check what goes up (a file the provider would refuse is
        ``ledger.reject``-ed) and make it (SEAL's flat ZIP, at ``batch.package``);
        idempotent (a restart may call it again, and a torn result is made again). The
        (sha256, bytes) of what it made, which the state machine records with the batch (and
        hands back as ``batch.prepared``); None when it made nothing."""

    def create(self, batch: BatchView, ledger: Ledger) -> str:
        """Make a remote batch (or do what stands for it: Centrapay publishes the file,
        noting its key with ``ledger.publishing`` first, and returns ""); its id. May be
        repeated."""

    def upload(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        """Send the documents. Each per-document send is noted with ``ledger.sending``
        before and ``ledger.answered`` after; a document already answered for this
        remote batch is not sent again, and one in doubt raises :class:`Abandon`."""

    def holds_upload(self, batch: BatchView, status: RemoteStatus) -> bool:
        """The provider's proof that ``remote`` holds exactly this batch, complete (SEAL:
        its document list equals the manifest; Clevver: every document answered, its
        checksum the local sha256, none in doubt)."""

    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus: ...

    def accept(self, batch: BatchView, remote_id: str, ledger: Ledger) -> None:
        """The point of no return when ``steps.irrevocable``: ACCEPTING is stored before."""

    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        """The per-document results once the remote batch is CLOSED. A result that is
        ``pending`` is asked again at the next poll, and fails with its own error code
        once ``max_wait`` has passed."""

    def salvage(self, batch: BatchView, remote_id: str) -> list[DocumentResult]:
        """After the provider lost a started batch: the results that can still be
        proven (Clevver: receipts with a txid); the other files go to errors as
        "may have been signed/stored". [] when nothing can be proven."""

    def delete(self, batch: BatchView, remote_id: str) -> None:
        """Remove the remote batch, or what create published (``batch.published``)."""

    def shown(self, key: str) -> str:
        """A publish key as logs and messages show it: a fingerprint when the key is
        a read key (Centrapay's served folder), else the key."""

    def tidy(self, keep: Callable[[], set[str]]) -> int:
        """After start, with ``Steps.publishes``: remove what this provider published that
        no batch names; how many. It lists what is published FIRST, then calls ``keep()``
        (every publish key a batch records now): a batch records its key before its copy
        or upload starts, so whatever was listed and ``keep()`` does not name is a stray,
        and a copy being made while tidy runs is never removed."""


# What makes the provider of a ``[providers.<name>]`` table from its name, the table and
# the state folder: :func:`build` (the registry's kinds), or a test's own provider class.
ProviderFactory = Callable[[str, ProviderSection, Path], Provider]


def fingerprint(key: str) -> str:
    """How logs name a publish key that is a read key (a served folder's unguessable
    name): its first 8 characters, enough to tell copies apart and to find it."""
    return key if len(key) <= 8 else key[:8] + "…"


def ask_status(provider: Provider, batch: BatchView, remote_id: str) -> RemoteStatus:
    """The provider's status of ``remote_id``, naming that remote batch (so that
    ``holds_upload`` can compare each document's answer with it)."""
    status = provider.status(batch, remote_id)
    return status if status.batch else dataclasses.replace(status, batch=remote_id)


def steps_of(kind: str) -> Steps:
    """The lifecycle of the provider kind ``kind``: a class attribute, so no provider is
    built (``retry`` and ``recover`` judge by it)."""
    from folderseal.providers.registry import provider_class

    steps: Steps = provider_class(kind).steps
    return steps


def build(name: str, cfg: object, state_dir: Path) -> Provider:
    """The provider for a configured ``[providers.<name>]`` table."""
    from folderseal.providers.registry import KINDS, provider_class

    kind = getattr(cfg, "kind", None)
    if kind not in KINDS or not isinstance(cfg, KINDS[kind].config):
        raise ValueError(f"no provider implementation for {type(cfg).__name__}")
    provider: Provider = provider_class(kind)(name, cfg, state_dir)
    return provider
