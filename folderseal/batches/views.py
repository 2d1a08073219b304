"""What a provider is told about a batch (:class:`~folderseal.providers.BatchView`),
built in one place for the state machine (from the store) and for ``recover`` (from
the files in the work folder and their manifest), and where a batch stages what it
fetches or makes (:class:`Staging`: the one place that chooses).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from folderseal.providers import BatchView, Document, RemoteDocument
from folderseal.work import WorkFolder

if TYPE_CHECKING:
    from folderseal.core.config import Settings


UPLOAD_PACKAGE = "upload.zip"  # in a staging folder of the share (fleet mode)


def staging_dir(state_dir: Path, batch_id: str) -> Path:
    """``<state_dir>/downloads/<batch id>/``: where a batch's results are fetched to on
    one node (SQLite)."""
    return state_dir / "downloads" / batch_id


@dataclass(frozen=True, slots=True)
class Staging:
    """Where a batch stages what its provider fetches or makes (SEAL's package and what
    it holds, the local signer's results): every provider is told by this, nothing else.

    On one node (SQLite) it is ``<state_dir>/downloads/<batch id>/``, local, one folder
    for every turn. In fleet mode (``shared``: a PostgreSQL store) another node may take
    a batch over, so its staging lives on the share beside the batch's manifest, a folder
    per lease epoch (``<work>/batches/<batch id>/.staging/<epoch>/``): each holder writes
    only into its own epoch's folder, so a node that lost its lease and still writes
    never touches the bytes of the holder now; and whoever holds the batch reads every
    epoch's folder, newest first, for results whose sha256 it can check, so what an
    earlier holder fetched or signed is used, never fetched or signed again. The state
    folder keeps the lock, the logs and the certificates either way."""

    state_dir: Path
    shared: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Staging:
        """The daemon's (and ``recover``'s): on the share when the store is PostgreSQL."""
        return cls(settings.state_dir, shared=settings.store.database_url() is not None)

    def folder(self, work: WorkFolder, batch_id: str, epoch: int) -> Path:
        """Where the holder of ``epoch`` writes."""
        if self.shared:
            return work.staging_dir(batch_id, epoch)
        return staging_dir(self.state_dir, batch_id)

    def package(self, work: WorkFolder, batch_id: str, epoch: int) -> Path:
        """Where the holder of ``epoch`` makes what goes up (SEAL's flat ZIP). In fleet
        mode it is in that holder's staging folder (entry names, which begin with four
        digits, never take its name), so a node that takes the batch over uploads the
        bytes whose sha256 is recorded instead of making them again; on one node,
        ``<state_dir>/packages/<batch id>.zip``."""
        if self.shared:
            return self.folder(work, batch_id, epoch) / UPLOAD_PACKAGE
        return package_path(self.state_dir, batch_id)

    def earlier(self, work: WorkFolder, batch_id: str, epoch: int) -> tuple[Path, ...]:
        """The staging folders earlier holders wrote, newest first (none on one node,
        where every turn stages in one folder)."""
        if not self.shared:
            return ()
        return tuple(p for p in work.staging_dirs(batch_id) if int(p.name) < epoch)

    def remove(self, work: WorkFolder, batch_id: str) -> None:
        """Remove what the batch staged, once nobody needs it (delivered, or every file
        in errors)."""
        if self.shared:
            work.remove_staging(batch_id)
        else:
            shutil.rmtree(staging_dir(self.state_dir, batch_id), ignore_errors=True)


def package_path(state_dir: Path, batch_id: str) -> Path:
    """``<state_dir>/packages/<batch id>.zip``: where prepare keeps what goes up, on
    one node."""
    return state_dir / "packages" / f"{batch_id}.zip"


def document(*, entry: str, file_id: str, sha256: str, size: int,
             notes: Mapping[str, dict[str, Any]], dev: int = 0, ino: int = 0,
             attempts: int = 0) -> Document:
    """One file of a batch, with the provider's latest answer for it from ``notes``
    (the store's, or the manifest's: file id → note)."""
    return Document(entry=entry, file_id=file_id, sha256=sha256, size=size, dev=dev, ino=ino,
                    attempts=attempts, remote=RemoteDocument.from_json(notes.get(file_id)))


def batch_view(batch_id: str, work: WorkFolder, staging: Staging | Path,
               documents: Iterable[Document], *, epoch: int = 0, package: Path | None = None,
               open_document: Callable[[Document], int] | None = None,
               prepared: tuple[str, int] | None = None, published: str = "",
               file_mode: int = 0o644) -> BatchView:
    """The batch ``batch_id`` of ``work``'s folder as a provider sees it, for the holder
    of lease ``epoch`` (``staging``: a state folder stands for one node's staging)."""
    if isinstance(staging, Path):
        staging = Staging(staging)
    return BatchView(id=batch_id, folder=work.folder, documents=tuple(documents),
                     files_dir=work.batch_dir(batch_id), package=package,
                     staging=staging.folder(work, batch_id, epoch),
                     staged_before=staging.earlier(work, batch_id, epoch),
                     open_document=open_document, prepared=prepared, published=published,
                     file_mode=file_mode)
