"""Grouping claimed files into batches: the one place batches are formed.

:class:`Batches` forms a folder's batches from its claimed files when one is due (full,
or its oldest file waited ``batch_max_wait_seconds``), passing over duplicates when
``duplicates = "skip"``. A batch is recorded in the store (batch and entry names)
*before* its files are moved into ``batches/<batch id>/``, so the work folder never
holds a batch the store does not know; moving (:func:`move_into_batch`, here and again
in the batch's first step) is idempotent and finishes after a crash. Entry names are
flat, ASCII-safe and unique within the batch (two subfolders may hold the same name):
``0007_Rechnung_fur_Marz.pdf``. What goes up to a provider (SEAL's flat ZIP) is the
provider's own business (its ``prepare`` step).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from folderseal.core import crashpoints, files
from folderseal.core.config import FolderConfig
from folderseal.core.errors import StateConflict
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileRecord
from folderseal.core.safety import safe_name
from folderseal.store import Store, new_id
from folderseal.work import CLAIMS_TAKEN_OVER, WorkFolder


def entry_name(index: int, source: str) -> str:
    """The flat ZIP entry name of the ``index``-th file of a batch."""
    return f"{index:04d}_{safe_name(source.rpartition('/')[2])}"


@dataclass(frozen=True, slots=True)
class Limits:
    max_files: int
    max_bytes: int
    max_wait: float


def next_batch(claimed: list[FileRecord], limits: Limits, now: float) -> list[FileRecord]:
    """The files that make the next batch now, or [] if it should wait for more.

    A batch closes when it is full (by count or bytes) or its oldest file waited
    ``max_wait``. A single file larger than ``max_bytes`` makes a batch of its own.
    """
    if not claimed:
        return []
    chosen: list[FileRecord] = []
    total = 0
    for record in claimed:
        if chosen and (len(chosen) >= limits.max_files or total + record.size > limits.max_bytes):
            return chosen  # full
        chosen.append(record)
        total += record.size
    full = len(chosen) >= limits.max_files or total >= limits.max_bytes
    oldest = min(r.claimed_at for r in chosen)
    return chosen if full or now - oldest >= limits.max_wait else []


class Batches:
    """Forms the batches of one folder from its claimed files."""

    def __init__(self, name: str, cfg: FolderConfig, provider: str, store: Store,
                 work: WorkFolder, fail: Callable[[str, tuple[str, str]], None], *,
                 max_batch_files: int | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.provider = provider
        self.store = store
        self.work = work
        self.fail = fail  # rejects a claimed file: (claim id, (code, message))
        # The provider may cap a batch below the folder's batch_max_files (Clevver: so
        # one lost answer costs a few files' remote batch, not a hundred's).
        self.limits = Limits(min(cfg.batch_max_files, max_batch_files or cfg.batch_max_files),
                             int(cfg.batch_max_bytes), cfg.batch_max_wait_seconds)
        self.next_at = 0.0  # when a batch may be due next
        self.log = get_logger(folder=name)

    def form(self, now: float) -> list[str]:
        """Group claimed files into batches that are due; returns the new batch ids.
        ``now`` is on this host's clock (so is ``next_at``); the claims' times are on the
        store's (the database's, in a fleet), so their age is measured on that."""
        # The store's clock ahead of this host's, to the millisecond (read this host's
        # first: a store on this host's clock is then never behind it, so no batch is
        # held back by the microseconds between the two readings).
        local = time.time()
        offset = round(self.store.clock() - local, 3)
        store_now = now + offset
        created = []
        while chosen := next_batch(claimed := self._oldest_claims(), self.limits, store_now):
            batch_id = new_id()
            entries = [(r.id, entry_name(i, r.source)) for i, r in enumerate(chosen, start=1)]
            try:
                self.store.create_batch(batch_id=batch_id, folder=self.name,
                                        provider=self.provider, entries=entries)
            except StateConflict as exc:  # another node took this one's claims over
                self.log.warning("claims.lost", reason=f"{exc}: {CLAIMS_TAKEN_OVER}")
                break
            crashpoints.reached("state:BATCHED")
            move_into_batch(self.work, batch_id, self.provider, self.store.files_of_batch(batch_id))
            self.log.info("batch.batched", batch=batch_id, files=len(chosen),
                          bytes=sum(r.size for r in chosen))
            created.append(batch_id)
        oldest = min((r.claimed_at for r in claimed), default=None)
        self.next_at = float("inf") if oldest is None \
            else oldest + self.limits.max_wait - offset
        return created

    def _oldest_claims(self) -> list[FileRecord]:
        """The oldest claims, as many as a batch takes (a backlog of 100,000 claims is
        not read for each batch), duplicates passed over when ``duplicates = "skip"``."""
        while True:
            claimed = self.store.own_claims(self.name, self.limits.max_files)
            if self.cfg.duplicates != "skip":
                return claimed
            kept = [r for r in claimed if not self._skip_duplicate(r)]
            if len(kept) == len(claimed):  # else read again: the duplicates are gone
                return kept

    def _skip_duplicate(self, record: FileRecord) -> bool:
        twin = self.store.delivered_twin(record)
        if twin is None:
            return False
        assert record.sha256 is not None
        self.fail(record.id, (
            "duplicate", f"the same content (sha256 {record.sha256[:12]}…) was already "
                         f"delivered from {twin.source_text!r} (duplicates = \"skip\")"))
        return True


def move_into_batch(work: WorkFolder, batch_id: str, provider: str,
                    records: list[FileRecord]) -> None:
    """Write the batch's manifest, then move each batched file from
    ``incoming/<claim>/`` to ``batches/<batch>/<entry>``.

    Idempotent: a file already moved is skipped, so a restart can finish the batch.
    """
    target = work.batch_dir(batch_id)
    work.write_manifest(batch_id, provider, records)
    claims_folders = set()
    for record in records:
        assert record.entry is not None
        if os.path.lexists(target / record.entry):
            continue  # moved before a restart
        for _ in range(2):  # look again: a node may be moving the claim between folders
            claim = work.claim_root(record.id, record.source)  # whichever node's folder
            source = claim / record.source
            try:
                os.rename(source, target / record.entry)
                break
            except FileNotFoundError:
                if os.path.lexists(target / record.entry):
                    break
        else:
            raise FileNotFoundError(errno.ENOENT, "the batched file is in no claims folder",
                                    str(source))
        work.remove_empty_claim_dirs(claim, source.parent)
        claims_folders.add(claim.parent)
    files.fsync_dir(target)
    for folder in sorted(claims_folders):
        files.fsync_dir(folder)

