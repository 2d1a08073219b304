"""The work folder of one inbox: where claimed files wait, and who owns them.

Layout (on the inbox's filesystem, so claiming is one atomic rename)::

    <work>/store-id                    the id of the store that owns these claims
    <work>/nodes/<node>/incoming/<claim id>/<path>
                                       a file the node claimed, at its path relative to
                                       the inbox: each node scans and sweeps only its own
                                       claims folder; a node silent for lease_seconds
                                       leaves its claims to another node's next scan
    <work>/nodes/<node>/incoming/.spare-<id>
                                       an emptied claim folder kept for a next claim,
                                       which gets it by a rename (see ``new_claim_dir``)
    <work>/batches/<batch id>/<entry>  a batched file under its flat entry name
    <work>/batches/<batch id>/.batch.json  the batch's manifest, written once, and
    <work>/batches/<batch id>/.note-NNNNNN.json  what the batch learned later (remote
                                       ids, answers, rejections, the published name),
                                       so ``folderseal recover`` can rebuild a lost
                                       store from the work folder (:mod:`.manifests`)
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

import contextlib
import errno
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from folderseal.core import files
from folderseal.core.errors import ForeignWorkFolderError
from folderseal.core.model import FileRecord, FileState
from folderseal.core.safety import open_claimed, open_dir, open_relative_dir
from folderseal.work.manifests import MANIFEST, Manifest, Manifests, entries

__all__ = ["MANIFEST", "Manifest", "Manifests", "WorkFolder"]

MARKER = "store-id"
STAGING = ".staging"  # beside the manifest (fleet mode): a folder per lease epoch
SPARE = ".spare-"     # an emptied claim folder, kept for a next claim
MAX_SPARES = 256      # a few batches' worth: enough for a steady flow of claims
# Why a node finds claims of its own gone (``claims.lost``), and what to do about it.
CLAIMS_TAKEN_OVER = ("a node took this node's claims over while it did not beat (paused or "
                     "cut off for longer than lease_seconds); that node batches them, nothing "
                     "to do here. If it happens often, look for what stops this node")


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
        self._spares: list[str] | None = None  # listed when first wanted
        self._spares_lock = threading.Lock()

    def claim_dir(self, claim_id: str) -> Path:
        return self.incoming / claim_id

    def new_claim_dir(self, claim_id: str) -> Path:
        """Make the folder of a new claim: a spare one renamed, when there is one. Every
        file is claimed into a folder of its own, and making one costs far more than a
        rename on a filesystem that removed many files lately (ext4 without a journal
        looks past every inode it freed in the last minutes)."""
        target = self.claim_dir(claim_id)
        while (spare := self._take_spare()) is not None:
            try:
                os.rename(self.incoming / spare, target)
                return target
            except FileNotFoundError:
                if not self.incoming.is_dir():  # the share is away: keep it for later
                    with self._spares_lock:
                        self._listed_spares().append(spare)
                    break
                # removed meanwhile (by hand?): take the next
        # Not its parents: claims folders missing are a share away (or a work folder
        # removed), and made here they would be on the disk under its mount point. The
        # folder's intake detaches on the error and attaches again when it can.
        target.mkdir()
        return target

    def remove_empty_claim_dirs(self, top: Path, start: Path, spare: bool = True) -> None:
        """Remove the empty folders of a claim from ``start`` up to its folder ``top``,
        which is kept as a spare for a next claim when ``spare`` (only this node's own,
        and a limited number); stops at one that is not empty. The claims folder
        changed: the caller syncs it."""
        folder = start
        while True:
            try:
                if folder == top and spare:
                    self._retire_claim_dir(folder)
                else:
                    folder.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return
                if exc.errno != errno.ENOENT:
                    raise
            if folder == top:
                return
            folder = folder.parent

    def _retire_claim_dir(self, folder: Path) -> None:
        if folder.parent == self.incoming and not os.listdir(folder):
            with self._spares_lock:
                spares = self._listed_spares()
                if len(spares) < MAX_SPARES:
                    name = SPARE + uuid.uuid4().hex
                    os.rename(folder, self.incoming / name)
                    spares.append(name)
                    return
        folder.rmdir()

    def _take_spare(self) -> str | None:
        with self._spares_lock:
            spares = self._listed_spares()
            return spares.pop() if spares else None

    def _listed_spares(self) -> list[str]:
        """The spare claim folders (listed once: a run before this one left some?)."""
        if self._spares is None:
            self._spares = [n for n in entries(self.incoming) if n.startswith(SPARE)]
        return self._spares

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches / batch_id

    def claim_dirs(self, claim_id: str) -> list[Path]:
        """Where a claim of any node may be: this node's folder first, then the other
        nodes', then an older folderseal's (until the work folder is adopted)."""
        own = self.claim_dir(claim_id)
        others = [self.nodes / node / "incoming" / claim_id for node in entries(self.nodes)]
        return [own, *[p for p in others if p != own], self.legacy_incoming / claim_id]

    def claim_root(self, claim_id: str, source: str) -> Path:
        """The folder of a claim that holds its file ``source``: in the claims folder of
        whichever node holds it now (a node takes a dead node's claims over by renames),
        else where this node would have it."""
        own = self.claim_dir(claim_id)
        if os.path.lexists(own / source):  # nearly always: no need to list the nodes
            return own
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
        epochs = sorted((int(name) for name in entries(root) if name.isdigit()),
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
        return sorted(n for n in entries(self.nodes) if n != own)

    def take_claims_of(self, node: str) -> list[str]:
        """Move a dead node's claims into this node's folder; the ids moved."""
        return self._take_claims(self.nodes / node / "incoming")

    def _take_claims(self, theirs: Path) -> list[str]:
        """Move every claim in ``theirs`` into this node's folder (renames on one
        filesystem; the store knows each claim by its id, whoever made it)."""
        moved = []
        for claim_id in claim_names(theirs):
            try:
                os.rename(theirs / claim_id, self.incoming / claim_id)
            except FileNotFoundError:
                continue  # another node took it first
            moved.append(claim_id)
        for name in entries(theirs):  # its spare claim folders: no node uses them now
            if name.startswith(SPARE):
                with contextlib.suppress(OSError):
                    (theirs / name).rmdir()
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
        return any(claim_names(self.legacy_incoming)) or any(entries(self.batches)) \
            or any(claim_names(self.nodes / node / "incoming")
                   for node in entries(self.nodes))

    def batch_ids(self) -> list[str]:
        return entries(self.batches)

    def claim_ids(self) -> list[str]:
        return claim_names(self.incoming)


def claim_names(folder: Path) -> list[str]:
    """The claims in a claims folder (its spare folders are none)."""
    return [name for name in entries(folder) if not name.startswith(SPARE)]
