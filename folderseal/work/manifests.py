"""A batch's manifest in the work folder: what ``folderseal recover`` and the state
machine go by when the store lost (or never had) what the work folder knows.

``<work>/batches/<batch id>/.batch.json`` is written once, when the batch is made: each
file's source, sha256 and entry. What the batch learns later is a note of its own
beside it (``.note-000001.json``…): every remote batch id the provider gave it (written
before anything is uploaded there), each answer the provider gave for one document,
each file the provider rejected, and the name the batch's file was published under.
:class:`Manifests` is their one reader and writer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal.core import files
from folderseal.core.model import FileRecord

MANIFEST = ".batch.json"
NOTE = ".note-"  # beside the manifest: what the batch learned later, a file each


@dataclass(frozen=True, slots=True)
class ListedFile:
    """One file as its batch's manifest lists it."""

    id: str | None        # None when the manifest does not say
    source: str           # its path in the inbox ("" when the manifest does not say)
    entry: str            # its flat name in the batch folder
    sha256: str | None
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """A batch's manifest, as read: what ``recover`` and the state machine go by when
    the store lost (or never had) what the work folder knows."""

    batch: str
    provider: str
    files: tuple[ListedFile, ...]
    remote_ids: tuple[str, ...]               # oldest first
    published: str                            # "" when nothing was published
    notes: dict[str, dict[str, Any]]          # file id → the latest note for it
    rejected: dict[str, tuple[str, str]]      # file id → (code, message)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Read what :class:`Manifests` wrote; anything malformed is skipped."""
        listed = tuple(
            ListedFile(id=f.get("id") if isinstance(f.get("id"), str) else None,
                       source=f["source"] if isinstance(f.get("source"), str) else "",
                       entry=f["entry"] if isinstance(f.get("entry"), str) else "",
                       sha256=f.get("sha256") if isinstance(f.get("sha256"), str) else None,
                       size=f["bytes"] if isinstance(f.get("bytes"), int) else 0)
            for f in data.get("files", []) if isinstance(f, dict))
        notes: dict[str, dict[str, Any]] = {}
        for note in data.get("documents", []):
            if isinstance(note, dict) and isinstance(note.get("file"), str):
                notes[note["file"]] = {k: v for k, v in note.items() if k != "file"}
        rejected: dict[str, tuple[str, str]] = {}
        for mark in data.get("rejected", []):
            if isinstance(mark, dict) and isinstance(mark.get("file"), str):
                rejected[mark["file"]] = (str(mark.get("code") or "rejected"),
                                          str(mark.get("message") or ""))
        return cls(batch=str(data.get("batch") or ""), provider=str(data.get("provider") or ""),
                   files=listed,
                   remote_ids=tuple(r for r in data.get("remote_ids", [])
                                    if isinstance(r, str) and r),
                   published=data["published"] if isinstance(data.get("published"), str)
                   else "", notes=notes, rejected=rejected)


class Manifests:
    """The manifests beside a work folder's batches: their one reader and writer.

    A manifest is written once, when its batch is made (``.batch.json``); what a batch
    learns later (a remote batch id, a provider's answer for a document, a file it
    rejected, the name published under) is a note of its own, a new hidden file beside
    it (``.note-000001.json``…) that is never rewritten: two nodes (one paused past its
    lease, one that took the batch over) can both add notes, and neither loses the
    other's. Each note carries the epoch of the lease its writer held; reading, notes
    count in the order of their epochs, then of their numbers, so a late note of an
    earlier holder never wins over one of a later holder. That is safe for a note of a
    send about to go out, too: a note is durable before the store records it, and the
    store's write is fenced by the lease (a step goes on only after both), so a holder
    that lost its lease stops between its note and its send. After a lost store the
    manifest therefore knows at least as much as the store did."""

    def __init__(self, batches: Path, folder: str) -> None:
        self.batches = batches
        self.folder = folder

    def write(self, batch_id: str, provider: str, records: Iterable[FileRecord]) -> None:
        """Describe a new batch beside its files (once: whoever wrote it first, a restart
        or another node, keeps it)."""
        folder = self.batches / batch_id
        files.makedirs(folder)
        if (folder / MANIFEST).exists():
            return
        body = _json_bytes({
            "batch": batch_id, "folder": self.folder, "provider": provider, "remote_ids": [],
            "files": [{"id": r.id, "source": r.source, "entry": r.entry, "sha256": r.sha256,
                       "bytes": r.size} for r in records]})
        try:
            files.write_new(folder, MANIFEST, body, 0o600, "manifest")
        except FileExistsError:
            return
        files.fsync_dir(folder)

    def json(self, batch_id: str) -> dict[str, Any] | None:
        """The manifest with its notes applied, or None if it has none (or it cannot be
        read)."""
        folder = self.batches / batch_id
        try:
            data = json.loads((folder / MANIFEST).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("batch") != batch_id:
            return None
        if not isinstance(data.get("remote_ids"), list):
            data["remote_ids"] = []
        for note in self._notes(folder):
            _apply(data, note)
        return data

    def read(self, batch_id: str) -> Manifest | None:
        """The batch's manifest, or None if it has none (or it cannot be read)."""
        data = self.json(batch_id)
        return Manifest.from_json(data) if data is not None else None

    def remote_ids(self, batch_id: str) -> list[str]:
        """The remote batch ids the manifest keeps, oldest first."""
        manifest = self.read(batch_id)
        return list(manifest.remote_ids) if manifest else []

    def document_notes(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """file id → the latest note the manifest holds for it."""
        manifest = self.read(batch_id)
        return manifest.notes if manifest else {}

    def rejected(self, batch_id: str) -> dict[str, tuple[str, str]]:
        """file id → (code, message) of each file the manifest marks rejected."""
        manifest = self.read(batch_id)
        return manifest.rejected if manifest else {}

    def note_remote_id(self, batch_id: str, remote_id: str, epoch: int = 0) -> None:
        """Add a remote batch id, durably, before the store records it (so before
        anything is uploaded there)."""
        if remote_id not in self.remote_ids(batch_id):
            self._add(batch_id, {"remote_id": remote_id}, epoch)

    def note_published(self, batch_id: str, key: str, epoch: int = 0) -> None:
        """Record, durably, the name or key the batch's file is about to be published
        under (Centrapay), before the store and before any byte is published: a
        ``recover`` after a lost store still knows what to remove."""
        manifest = self.read(batch_id)
        if manifest is not None and manifest.published != key:
            self._add(batch_id, {"published": key}, epoch)

    def note_document(self, batch_id: str, file_id: str, note: dict[str, Any],
                      epoch: int = 0) -> None:
        """Add the provider's answer (or a send about to go out) for one document,
        durably; the latest note of a file is what counts."""
        self._add(batch_id, {"document": {"file": file_id, **note}}, epoch)

    def note_rejected(self, batch_id: str, file_id: str, code: str, message: str,
                      epoch: int = 0) -> None:
        """Mark a file the provider rejected, durably, before the store records it: after
        a lost store it must not count as part of the batch again (``recover``)."""
        self._add(batch_id, {"rejected": {"file": file_id, "code": code, "message": message}},
                  epoch)

    def discard(self, batch_id: str) -> None:
        """Remove the manifest of a finished batch, its notes, and any temp file a crash
        left."""
        folder = self.batches / batch_id
        (folder / MANIFEST).unlink(missing_ok=True)  # first: a late writer then adds no note
        for name in entries(folder):
            if name.startswith(NOTE):
                (folder / name).unlink(missing_ok=True)
        files.remove_leftovers(folder, "manifest")
        files.remove_leftovers(folder, "note")

    def _add(self, batch_id: str, note: dict[str, Any], epoch: int) -> None:
        """Add a note as a new file of its own (never replacing one: its number taken
        with an exclusive create), durably; a batch without a manifest keeps none."""
        folder = self.batches / batch_id
        if not (folder / MANIFEST).exists():
            return
        body = _json_bytes({"epoch": epoch, **note})
        numbers = [number for number, _ in _numbered_notes(folder)]
        number = max(numbers, default=-1) + 1  # after every note there: its order counts
        while True:
            try:
                files.write_new(folder, f"{NOTE}{number:06d}.json", body, 0o600, "note")
                break
            except FileExistsError:
                number += 1  # another writer took this number
        files.fsync_dir(folder)

    @staticmethod
    def _notes(folder: Path) -> list[dict[str, Any]]:
        """The batch's notes, in the order they count: by epoch, then by number."""
        found = []
        for number, name in _numbered_notes(folder):
            try:
                note = json.loads((folder / name).read_bytes())
            except (FileNotFoundError, ValueError):
                continue
            if isinstance(note, dict):
                epoch = note.get("epoch")
                found.append((epoch if isinstance(epoch, int) else 0, number, note))
        return [note for _, _, note in sorted(found, key=lambda item: item[:2])]


def _numbered_notes(folder: Path) -> list[tuple[int, str]]:
    """(number, name) of each note beside a manifest."""
    found = []
    for name in entries(folder):
        digits = name[len(NOTE):-len(".json")] if name.startswith(NOTE) \
            and name.endswith(".json") else ""
        if digits.isdigit():
            found.append((int(digits), name))
    return found


def _apply(manifest: dict[str, Any], note: dict[str, Any]) -> None:
    """Apply one note to the manifest as :class:`Manifest` reads it."""
    remote_id = note.get("remote_id")
    if isinstance(remote_id, str) and remote_id not in manifest["remote_ids"]:
        manifest["remote_ids"].append(remote_id)
    if isinstance(note.get("published"), str):
        manifest["published"] = note["published"]
    for key, kind in (("document", "documents"), ("rejected", "rejected")):
        if isinstance(note.get(key), dict):
            manifest.setdefault(kind, []).append(note[key])


def _json_bytes(data: dict[str, Any]) -> bytes:
    # ensure_ascii keeps source names that are not UTF-8 (surrogate escapes) intact.
    return json.dumps(data, indent=1, ensure_ascii=True).encode() + b"\n"


def entries(path: Path) -> list[str]:
    """The names in a folder; none if it is not there."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
