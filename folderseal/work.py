"""The work folder of one inbox: where claimed files wait, and who owns them.

Layout (on the inbox's filesystem, so claiming is one atomic rename)::

    <work>/store-id                    the id of the store that owns these claims
    <work>/incoming/<claim id>/<path>  a claimed file, at its path relative to the inbox
    <work>/batches/<batch id>/<entry>  a batched file under its flat entry name
    <work>/batches/<batch id>/.batch.json  the batch's manifest: each file's source,
                                       sha256 and entry, and every remote batch id the
                                       provider gave it (written before anything is
                                       uploaded there), and each answer the provider
                                       gave for one document (``documents``: file id,
                                       remote batch, the provider's id or null while
                                       in doubt, checksum), appended the moment it
                                       arrives, and each file the provider rejected
                                       (``rejected``: file id, code, message), so
                                       ``folderseal recover`` can rebuild a lost store
                                       from the work folder

A work folder that holds another store's id, or batches this store does not know,
means the store was lost or replaced, or two daemons share one inbox: continuing
could seal files twice, so the daemon refuses to start and says how to recover.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from folderseal.core.errors import ForeignWorkFolderError
from folderseal.core.model import FileRecord, FileState
from folderseal.publish import files
from folderseal.publish.safety import open_claimed, open_dir, open_relative_dir

MARKER = "store-id"
MANIFEST = ".batch.json"


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

    # -- the batch manifest ----------------------------------------------------------

    def write_manifest(self, batch_id: str, provider: str, records: Iterable[FileRecord]) -> None:
        """Describe a new batch beside its files (once; a restart keeps the first)."""
        folder = self.batch_dir(batch_id)
        files.makedirs(folder)
        if (folder / MANIFEST).exists():
            return
        self._save_manifest(folder, {
            "batch": batch_id, "folder": self.folder, "provider": provider, "remote_ids": [],
            "files": [{"id": r.id, "source": r.source, "entry": r.entry, "sha256": r.sha256,
                       "bytes": r.size} for r in records]})

    def note_remote_id(self, batch_id: str, remote_id: str) -> None:
        """Add a remote batch id to the manifest, durably, before the store records it
        (so before anything is uploaded there)."""
        manifest = self.manifest(batch_id)
        if manifest is None or remote_id in manifest["remote_ids"]:
            return
        manifest["remote_ids"].append(remote_id)
        self._save_manifest(self.batch_dir(batch_id), manifest)

    def note_published(self, batch_id: str, key: str) -> None:
        """Record, durably, the name or key the batch's file is about to be published
        under (Centrapay), before the store and before any byte is published: a
        ``recover`` after a lost store still knows what to remove."""
        manifest = self.manifest(batch_id)
        if manifest is None or manifest.get("published") == key:
            return
        manifest["published"] = key
        self._save_manifest(self.batch_dir(batch_id), manifest)

    def remote_ids(self, batch_id: str) -> list[str]:
        """The remote batch ids the manifest keeps, oldest first."""
        return [r for r in (self.manifest(batch_id) or {}).get("remote_ids", [])
                if isinstance(r, str) and r]

    def note_document(self, batch_id: str, file_id: str, note: dict[str, Any]) -> None:
        """Append the provider's answer (or a send about to go out) for one document to
        the manifest, durably; the latest note of a file is what counts."""
        manifest = self.manifest(batch_id)
        if manifest is None:
            return
        manifest.setdefault("documents", []).append({"file": file_id, **note})
        self._save_manifest(self.batch_dir(batch_id), manifest)

    def note_rejected(self, batch_id: str, file_id: str, code: str, message: str) -> None:
        """Mark a file the provider rejected, durably, before the store records it: after
        a lost store it must not count as part of the batch again (``recover``)."""
        manifest = self.manifest(batch_id)
        if manifest is None:
            return
        manifest.setdefault("rejected", []).append(
            {"file": file_id, "code": code, "message": message})
        self._save_manifest(self.batch_dir(batch_id), manifest)

    def rejected(self, batch_id: str) -> dict[str, tuple[str, str]]:
        """file id → (code, message) of each file the manifest marks rejected."""
        found: dict[str, tuple[str, str]] = {}
        for mark in (self.manifest(batch_id) or {}).get("rejected", []):
            if isinstance(mark, dict) and isinstance(mark.get("file"), str):
                found[mark["file"]] = (str(mark.get("code") or "rejected"),
                                       str(mark.get("message") or ""))
        return found

    def document_notes(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """file id → the latest note the manifest holds for it."""
        notes: dict[str, dict[str, Any]] = {}
        for note in (self.manifest(batch_id) or {}).get("documents", []):
            if isinstance(note, dict) and isinstance(note.get("file"), str):
                notes[note["file"]] = {k: v for k, v in note.items() if k != "file"}
        return notes

    def manifest(self, batch_id: str) -> dict[str, Any] | None:
        """The batch's manifest, or None if it has none (or it cannot be read)."""
        try:
            data = json.loads((self.batch_dir(batch_id) / MANIFEST).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("batch") == batch_id else None

    def remove_batch(self, batch_id: str) -> bool:
        """Remove a finished batch's folder and manifest; False if files are left in it."""
        folder = self.batch_dir(batch_id)
        try:
            if [name for name in os.listdir(folder) if not name.startswith(".")]:
                return False
            files.remove_leftovers(folder, "manifest")
            (folder / MANIFEST).unlink(missing_ok=True)
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
            return False
        return True

    @staticmethod
    def _save_manifest(folder: Path, manifest: dict[str, Any]) -> None:
        # ensure_ascii keeps source names that are not UTF-8 (surrogate escapes) intact.
        body = json.dumps(manifest, indent=1, ensure_ascii=True).encode() + b"\n"
        with files.temp_file(folder, 0o600, "manifest") as (fd, tmp):
            files.write_all(fd, body)
            os.fsync(fd)
            os.replace(tmp, folder / MANIFEST)
        files.fsync_dir(folder)

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
