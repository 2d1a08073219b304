"""The work folder of one inbox: where claimed files wait, and who owns them.

Layout (on the inbox's filesystem, so claiming is one atomic rename)::

    <work>/store-id                    the id of the store that owns these claims
    <work>/incoming/<claim id>/<path>  a claimed file, at its path relative to the inbox
    <work>/batches/<batch id>/<entry>  a batched file under its flat entry name

A work folder that holds another store's id, or batches this store does not know,
means the store was lost or replaced, or two daemons share one inbox: continuing
could seal files twice, so the daemon refuses to start and says how to recover.
"""

from __future__ import annotations

import os
from pathlib import Path

from folderseal import files
from folderseal.errors import ForeignWorkFolderError
from folderseal.model import FileRecord, FileState
from folderseal.safety import open_claimed, open_dir, open_relative_dir

MARKER = "store-id"


class WorkFolder:
    def __init__(self, path: Path, folder: str) -> None:
        self.path = path
        self.folder = folder
        self.incoming = path / "incoming"
        self.batches = path / "batches"
        self.marker = path / MARKER

    def claim_dir(self, claim_id: str) -> Path:
        return self.incoming / claim_id

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches / batch_id

    def path_of(self, record: FileRecord) -> Path:
        """Where a claimed file waits: in its claim, or in its batch under its entry name."""
        if record.state == FileState.CLAIMED or record.entry is None:
            return self.claim_dir(record.id) / record.source
        return self.batch_dir(record.batch_id or "") / record.entry

    def open_file(self, record: FileRecord) -> int:
        """Open a claimed file for reading, refusing anything but the claimed file."""
        if record.state == FileState.CLAIMED or record.entry is None:
            head, _, name = record.source.rpartition("/")
            root = open_dir(self.claim_dir(record.id))
            parts = tuple(head.split("/")) if head else ()
        else:
            name = record.entry
            root = open_dir(self.batch_dir(record.batch_id or ""))
            parts = ()
        try:
            folder = open_relative_dir(root, parts)
        finally:
            os.close(root)
        try:
            return open_claimed(folder, name, record.dev, record.ino)
        finally:
            os.close(folder)

    def owner(self) -> str | None:
        """The store id in the marker, or None if there is no marker."""
        try:
            return self.marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None

    def adopt(self, store_id: str, known_batches: set[str]) -> None:
        """Make sure this work folder belongs to ``store_id``; create it if it is new.

        Raises ForeignWorkFolderError (exit 78) if it belongs to another store or holds
        batches the store does not know.
        """
        owner = self.owner()
        way_out = (
            "If the store that owned it is gone for good, run 'folderseal recover' to "
            "rebuild the store from the work folder; otherwise point this daemon at "
            "that store's state_dir, or give each daemon its own inbox."
        )
        if owner is not None and owner != store_id:
            raise ForeignWorkFolderError(
                f"the work folder {self.path} of folder {self.folder!r} belongs to store "
                f"{owner}, but this daemon's store (in state_dir) is {store_id}. {way_out}"
            )
        if owner is None and self._has_content():
            raise ForeignWorkFolderError(
                f"the work folder {self.path} of folder {self.folder!r} holds files but no "
                f"{MARKER} marker, so no store can vouch for them. {way_out}"
            )
        unknown = sorted(set(self.batch_ids()) - known_batches)
        if unknown:
            raise ForeignWorkFolderError(
                f"the work folder {self.path} holds batches the store does not know "
                f"({', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}): the store "
                f"was lost or replaced. {way_out}"
            )
        if owner is None:
            files.makedirs(self.path)
            files.write_new(self.path, MARKER, f"{store_id}\n".encode(), 0o644)
        for sub in (self.incoming, self.batches):
            files.makedirs(sub)

    def attached(self, store_id: str) -> bool:
        """True if the marker is readable and ours: the share is mounted and it is ours."""
        try:
            return self.owner() == store_id
        except OSError:
            return False

    def _has_content(self) -> bool:
        return any(self._entries(self.incoming)) or any(self._entries(self.batches))

    @staticmethod
    def _entries(path: Path) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def batch_ids(self) -> list[str]:
        return self._entries(self.batches)

    def claim_ids(self) -> list[str]:
        return self._entries(self.incoming)
