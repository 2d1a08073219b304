"""The work folder of one inbox: where claimed files wait, and who owns them.

Layout (on the inbox's filesystem, so claiming is one atomic rename)::

    <work>/store-id                    the id of the store that owns these claims
    <work>/nodes/<node>/incoming/<claim id>/<path>
                                       a file the node claimed, at its path relative to
                                       the inbox: each node scans and sweeps only its own
                                       claims folder; a node that does not run leaves its
                                       claims to the next node that attaches the folder
    <work>/batches/<batch id>/<entry>  a batched file under its flat entry name
    <work>/batches/<batch id>/.batch.json  the batch's manifest: each file's source,
                                       sha256 and entry, and every remote batch id the
                                       provider gave it (written before anything is
                                       uploaded there), and each answer the provider
                                       gave for one document (``documents``: file id,
                                       remote batch, the provider's id or null while
                                       in doubt, checksum), appended the moment it
                                       arrives, each file the provider rejected
                                       (``rejected``: file id, code, message), and the
                                       name the batch's file was published under
                                       (``published``), so ``folderseal recover`` can
                                       rebuild a lost store from the work folder;
                                       :class:`Manifests` is its one reader and writer
    <work>/batches/<batch id>/.staging/<epoch>/
                                       fleet mode (a PostgreSQL store): what the batch
                                       staged (a provider's downloaded package and
                                       results, the local signer's results), one folder
                                       per lease epoch, each written only by the holder
                                       of that epoch, so a node that took the batch over
                                       finds, checks and publishes what an earlier
                                       holder staged (see ``batches/views.Staging``)

Claims an older folderseal made in ``<work>/incoming/`` are moved into this node's own
folder when the work folder is adopted (one node owned them).

A work folder that holds another store's id, or batches this store does not know,
means the store was lost or replaced, or two daemons share one inbox: continuing
could seal files twice, so the daemon refuses to start and says how to recover.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal.core import files
from folderseal.core.errors import ForeignWorkFolderError
from folderseal.core.model import FileRecord, FileState
from folderseal.core.safety import open_claimed, open_dir, open_relative_dir

MARKER = "store-id"
MANIFEST = ".batch.json"
NOTE = ".note-"  # beside the manifest: what the batch learned later, a file each
STAGING = ".staging"  # beside the manifest (fleet mode): a folder per lease epoch


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
    other's. Each note
    carries the epoch of the lease its writer held; reading, notes count in the order of
    their epochs, then of their numbers, so a late note of an earlier holder never wins
    over one of a later holder. Every note is durable before the store records it (a
    step goes on only after both), so after a lost store the manifest knows at least as
    much."""

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
        for name in _entries(folder):
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
    for name in _entries(folder):
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


def _entries(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


class WorkFolder:
    """One inbox's work folder: its claims, its batches (with their :class:`Manifests`)
    and the marker naming the store that owns them.

    More than 15 methods on purpose: together they are the folder's one layout (where a
    claim of any node, a batch and the marker live, and how claims change hands); split,
    the layout would be written in two places."""

    def __init__(self, path: Path, folder: str, node: str) -> None:
        self.path = path
        self.folder = folder
        self.nodes = path / "nodes"
        self.incoming = self.nodes / node / "incoming"  # this node's claims
        self.legacy_incoming = path / "incoming"        # an older folderseal's claims
        self.batches = path / "batches"
        self.marker = path / MARKER
        self.manifests = Manifests(self.batches, folder)

    def claim_dir(self, claim_id: str) -> Path:
        return self.incoming / claim_id

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches / batch_id

    def claim_dirs(self, claim_id: str) -> list[Path]:
        """Where a claim of any node may be: this node's folder first, then the other
        nodes', then an older folderseal's (until the work folder is adopted)."""
        own = self.claim_dir(claim_id)
        others = [self.nodes / node / "incoming" / claim_id for node in _entries(self.nodes)]
        return [own, *[p for p in others if p != own], self.legacy_incoming / claim_id]

    def claim_root(self, claim_id: str, source: str) -> Path:
        """The folder of a claim that holds its file ``source``: in the claims folder of
        whichever node holds it now (a node takes a dead node's claims over by renames),
        else where this node would have it."""
        places = self.claim_dirs(claim_id)
        return next((d for d in places if os.path.lexists(d / source)), places[0])

    def claim_path(self, claim_id: str, source: str) -> Path:
        """Where a claimed file is (see :meth:`claim_root`)."""
        return self.claim_root(claim_id, source) / source

    def path_of(self, record: FileRecord) -> Path:
        """Where a claimed file waits: in its claim (whichever node made it), or in its
        batch under its entry name."""
        if record.state == FileState.CLAIMED or record.entry is None:
            return self.claim_path(record.id, record.source)
        return self.batch_dir(record.batch_id or "") / record.entry

    def open_file(self, record: FileRecord) -> int:
        """Open a claimed file for reading, refusing anything but the claimed file."""
        if record.state == FileState.CLAIMED or record.entry is None:
            head, _, name = record.source.rpartition("/")
            root = open_dir(self.claim_root(record.id, record.source))
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
            return open_claimed(folder, name, record.dev, record.ino, record.sha256)
        finally:
            os.close(folder)

    def staging_dir(self, batch_id: str, epoch: int) -> Path:
        """Where the holder of ``epoch`` stages the batch's results (fleet mode)."""
        return self.batch_dir(batch_id) / STAGING / str(epoch)

    def staging_dirs(self, batch_id: str) -> list[Path]:
        """The batch's staging folders there are, newest epoch first."""
        root = self.batch_dir(batch_id) / STAGING
        epochs = sorted((int(name) for name in _entries(root) if name.isdigit()),
                        reverse=True)
        return [root / str(epoch) for epoch in epochs]

    def remove_staging(self, batch_id: str) -> None:
        """Remove every epoch's staging of a batch that needs it no more (delivered,
        failed into errors, or settled by ``recover``)."""
        shutil.rmtree(self.batch_dir(batch_id) / STAGING, ignore_errors=True)

    def write_manifest(self, batch_id: str, provider: str, records: Iterable[FileRecord]) -> None:
        """Describe a new batch beside its files (once; a restart keeps the first)."""
        self.manifests.write(batch_id, provider, records)

    def remove_batch(self, batch_id: str) -> bool:
        """Remove a finished batch's folder and manifest; False if files are left in it."""
        folder = self.batch_dir(batch_id)
        for _ in range(3):  # a late writer's note may land meanwhile: tidy again
            try:
                if [name for name in os.listdir(folder) if not name.startswith(".")]:
                    return False
                self.remove_staging(batch_id)
                self.manifests.discard(batch_id)
                folder.rmdir()
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                continue
            return True
        return False

    def owner(self) -> str | None:
        """The store id in the marker, or None if there is no marker."""
        try:
            return self.marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None

    def adopt(self, store_id: str, known_batches: Callable[[], set[str]], *,
              shared: bool = False) -> str | None:
        """Make sure this work folder belongs to ``store_id``; create it if it is new.
        ``known_batches`` asks the store which batches it knows; ``shared`` says the
        store is one of several nodes (PostgreSQL). Returns the store the work folder
        was handed over from, if any: on a shared store an empty work folder of another
        store (a node drained before it moved to this database) becomes this store's.

        Raises ForeignWorkFolderError (exit 78) if it belongs to another store and still
        holds its claims or batches, or holds batches the store does not know.
        """
        owner = self.owner()
        way_out = (
            "If the store that owned it is gone for good, run 'folderseal recover' to "
            "rebuild the store from the work folder; otherwise point this daemon at "
            "that store's state_dir, or give each daemon its own inbox."
        )
        handed_over = None
        if owner is not None and owner != store_id:
            if shared and self._has_content():
                raise ForeignWorkFolderError(
                    f"the work folder {self.path} of folder {self.folder!r} still holds "
                    f"claims or batches of store {owner}, not of this node's store "
                    f"{store_id}: drain the node that ran on store {owner} first (start it "
                    "on its old store until `folderseal status` shows nothing in flight and "
                    "this work folder holds no claims or batches, then stop it), then start "
                    f"this node again (docs/fleet.md, \"Moving from SQLite\"). {way_out}")
            if not shared:
                raise ForeignWorkFolderError(
                    f"the work folder {self.path} of folder {self.folder!r} belongs to store "
                    f"{owner}, but this daemon's store (in state_dir) is {store_id}. "
                    f"{way_out}")
            self.hand_over(store_id)
            if self._has_content():  # its node still runs: it claimed meanwhile
                self.hand_over(owner)
                raise ForeignWorkFolderError(
                    f"the work folder {self.path} of folder {self.folder!r} took a claim of "
                    f"store {owner} while this node took it over: that store's node still "
                    "runs. Stop it once `folderseal status` shows nothing in flight, then "
                    "start this node again.")
            handed_over, owner = owner, store_id
        if owner is None and self._has_content():
            raise ForeignWorkFolderError(
                f"the work folder {self.path} of folder {self.folder!r} holds files but no "
                f"{MARKER} marker, so no store can vouch for them. {way_out}"
            )
        # The filesystem first, the store second, and both again before concluding: on a
        # shared store another node may make a batch meanwhile, and it records the batch
        # before it makes the batch's folder.
        unknown = set(self.batch_ids()) - known_batches()
        if unknown:
            unknown = (unknown & set(self.batch_ids())) - known_batches()
        if unknown:
            listed = sorted(unknown)
            raise ForeignWorkFolderError(
                f"the work folder {self.path} holds batches the store does not know "
                f"({', '.join(listed[:5])}{' …' if len(listed) > 5 else ''}): the store "
                f"was lost or replaced. {way_out}"
            )
        if owner is None:
            files.makedirs(self.path)
            try:
                files.write_new(self.path, MARKER, f"{store_id}\n".encode(), 0o644)
            except FileExistsError:  # another node of this store made it a moment ago
                if self.owner() != store_id:
                    raise ForeignWorkFolderError(
                        f"the work folder {self.path} of folder {self.folder!r} was just "
                        f"taken by store {self.owner()}, not this node's store {store_id}: "
                        f"two daemons of different stores watch this inbox. {way_out}"
                    ) from None
        for sub in (self.incoming, self.batches):
            files.makedirs(sub)
        self._take_legacy_claims()
        return handed_over

    def other_nodes(self) -> list[str]:
        """The other nodes with a claims folder here."""
        own = self.incoming.parent.name
        return sorted(n for n in _entries(self.nodes) if n != own)

    def take_claims_of(self, node: str) -> list[str]:
        """Move a dead node's claims into this node's folder; the ids moved."""
        return self._take_claims(self.nodes / node / "incoming")

    def _take_claims(self, theirs: Path) -> list[str]:
        """Move every claim in ``theirs`` into this node's folder (renames on one
        filesystem; the store knows each claim by its id, whoever made it)."""
        moved = []
        for claim_id in _entries(theirs):
            try:
                os.rename(theirs / claim_id, self.incoming / claim_id)
            except FileNotFoundError:
                continue  # another node took it first
            moved.append(claim_id)
        if moved:
            files.fsync_dir(self.incoming)
            files.fsync_dir(theirs)
        return moved

    def _take_legacy_claims(self) -> None:
        """Move the claims an older folderseal left in ``<work>/incoming/`` into this
        node's folder (renames on one filesystem; the store knows them by id), then
        remove the old folder."""
        self._take_claims(self.legacy_incoming)
        if self.legacy_incoming.is_dir():
            try:
                self.legacy_incoming.rmdir()
            except OSError as exc:  # gone, or a claim arrived: the next adoption takes it
                if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                    raise
                return
            files.fsync_dir(self.path)

    def hand_over(self, store_id: str) -> None:
        """Make the marker name ``store_id`` (``recover``, once it settled every batch
        of the store that owned this work folder): replaced atomically and durably."""
        with files.temp_file(self.path, 0o644, MARKER) as (fd, tmp):
            files.write_all(fd, f"{store_id}\n".encode())
            os.fchmod(fd, 0o644)
            os.fsync(fd)
            os.replace(tmp, self.marker)
        files.fsync_dir(self.path)

    def attached(self, store_id: str) -> bool:
        """True if the marker is readable and ours: the share is mounted and it is ours."""
        try:
            return self.owner() == store_id
        except OSError:
            return False

    def _has_content(self) -> bool:
        return any(_entries(self.legacy_incoming)) or any(_entries(self.batches)) \
            or any(_entries(self.nodes / node / "incoming")
                   for node in _entries(self.nodes))

    def batch_ids(self) -> list[str]:
        return _entries(self.batches)

    def claim_ids(self) -> list[str]:
        return _entries(self.incoming)
