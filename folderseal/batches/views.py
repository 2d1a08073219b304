"""What a provider is told about a batch (:class:`~folderseal.providers.BatchView`),
built in one place for the state machine (from the store) and for ``recover`` (from
the files in the work folder and their manifest), and where a batch keeps its files
in the state folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from folderseal.providers import BatchView, Document, RemoteDocument
from folderseal.work import WorkFolder


def staging_dir(state_dir: Path, batch_id: str) -> Path:
    """``<state_dir>/downloads/<batch id>/``: where a batch's results are fetched to."""
    return state_dir / "downloads" / batch_id


def package_path(state_dir: Path, batch_id: str) -> Path:
    """``<state_dir>/packages/<batch id>.zip``: where prepare may keep what goes up."""
    return state_dir / "packages" / f"{batch_id}.zip"


def document(*, entry: str, file_id: str, sha256: str, size: int,
             notes: Mapping[str, dict[str, Any]], dev: int = 0, ino: int = 0,
             attempts: int = 0) -> Document:
    """One file of a batch, with the provider's latest answer for it from ``notes``
    (the store's, or the manifest's: file id → note)."""
    return Document(entry=entry, file_id=file_id, sha256=sha256, size=size, dev=dev, ino=ino,
                    attempts=attempts, remote=RemoteDocument.from_json(notes.get(file_id)))


def batch_view(batch_id: str, work: WorkFolder, state_dir: Path, documents: Iterable[Document],
               *, package: Path | None = None,
               open_document: Callable[[Document], int] | None = None,
               prepared: tuple[str, int] | None = None, published: str = "") -> BatchView:
    """The batch ``batch_id`` of ``work``'s folder as a provider sees it."""
    return BatchView(id=batch_id, folder=work.folder, documents=tuple(documents),
                     files_dir=work.batch_dir(batch_id), package=package,
                     staging=staging_dir(state_dir, batch_id), open_document=open_document,
                     prepared=prepared, published=published)
