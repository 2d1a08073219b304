"""The provider protocol: the steps of the SEAL batch lifecycle, for every provider.

``create → upload → accept → status (until closed) → download → delete``. A
provider that has no such step does nothing in it (the local signer has no remote
batch to create). Providers know nothing about the store: the manager drives them
and records every step; the one thing a provider reports back during a step is an
attempt (:class:`Attempts`), counted in the store *before* it is made.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from folderseal.model import DocumentResult

# In the warning of a provider whose seal proves a file unchanged but not who sealed it;
# `status` and the status page show such a warning as a banner.
NOT_QUALIFIED = "sealing with a self-signed trial certificate: NOT QUALIFIED"


class Remote(enum.StrEnum):
    """Where a remote batch stands, in the provider's own terms mapped to ours."""

    NEW = "new"              # created, no documents yet
    UPLOADED = "uploaded"    # documents there, not accepted
    RUNNING = "running"      # accepted, being signed
    CLOSED = "closed"        # signed; ready for download
    GONE = "gone"            # the provider does not know the batch (any more)


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
    package: Path | None        # the flat ZIP, for providers that upload one
    staging: Path               # <state_dir>/downloads/<id>/: where results go


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    state: Remote
    documents: tuple[str, ...] = ()
    detail: str = ""
    trusted: bool = True   # False when the state was read from a number, not a name


@dataclass(frozen=True, slots=True)
class Health:
    """What a provider's check found, in the provider's own words; the caller names the
    provider. What must be fixed is raised as ConfigError instead."""

    verified: str = ""               # what was proven ("" when nothing was tried)
    warnings: tuple[str, ...] = ()
    unreachable: str = ""            # why the provider could not be asked, and what to do


class Attempts(Protocol):
    """The manager's ledger of attempts, handed to a step that signs file by file."""

    def begin(self, documents: list[Document]) -> list[int]:
        """Count an attempt at each document durably before it is made; the counts."""

    def forgive(self, documents: list[Document]) -> None:
        """Take back attempts that ended in a transient failure (not the files' fault)."""

    def stopping(self) -> bool:
        """True when the daemon is shutting down: finish the current file, then return."""


class Provider(Protocol):
    name: str
    kind: str
    wants_package: bool        # a flat ZIP is built for upload
    resumable_accept: bool     # accept may be sent again after it returned (local only)
    poll_interval: float
    max_wait: float
    retry_max_seconds: float   # the longest pause between retries of a failing step
    status_grace: float        # how long an upload or accept may take to show in status

    def start(self) -> None: ...
    def close(self) -> None: ...
    def check(self, network: bool = True) -> Health: ...
    def create(self, batch: BatchView) -> str: ...
    def upload(self, batch: BatchView, remote_id: str) -> None: ...
    def status(self, batch: BatchView, remote_id: str) -> RemoteStatus: ...
    def accept(self, batch: BatchView, remote_id: str, attempts: Attempts) -> None: ...
    def download(self, batch: BatchView, remote_id: str) -> list[DocumentResult]: ...
    def delete(self, batch: BatchView, remote_id: str) -> None: ...


ProviderFactory = Callable[..., Provider]


def build(name: str, cfg: object, state_dir: Path) -> Provider:
    """The provider for a configured ``[providers.<name>]`` table."""
    from folderseal.config import LocalProviderConfig, SealProviderConfig
    from folderseal.providers.local import LocalProvider
    from folderseal.providers.seal import SealProvider

    if isinstance(cfg, LocalProviderConfig):
        return LocalProvider(name, cfg, state_dir)
    if isinstance(cfg, SealProviderConfig):
        return SealProvider(name, cfg, state_dir)
    raise ValueError(f"no provider implementation for {type(cfg).__name__}")
