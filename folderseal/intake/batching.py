"""Grouping claimed files into batches.

A batch is recorded in the store (job and entry names) *before* its files are moved
into ``batches/<batch id>/``, so the work folder never holds a batch the store does
not know; moving is idempotent and finishes after a crash. Entry names are flat,
ASCII-safe and unique within the batch (two subfolders may hold the same name):
``0007_Rechnung_fur_Marz.pdf``. What goes up to a provider (SEAL's flat ZIP) is the
provider's own business (its ``prepare`` step).
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from folderseal.core.model import FileRecord
from folderseal.publish import files
from folderseal.work import WorkFolder

MAX_ENTRY_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, limit: int = MAX_ENTRY_NAME) -> str:
    """An ASCII name close to ``name``: ``Rechnung für März.pdf`` → ``Rechnung_fur_Marz.pdf``."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem.strip(".") or len(ext) > 10:
        stem, ext = text, ""
    stem, ext = _ascii(stem), _ascii(ext).strip("._-")
    if not stem.strip("_"):
        stem = "file"
    ext = f".{ext}" if ext else ""
    return stem[: max(1, limit - len(ext))] + ext


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _UNSAFE.sub("_", text).lstrip("._-")


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


def move_into_batch(work: WorkFolder, batch_id: str, provider: str,
                    records: list[FileRecord]) -> None:
    """Write the batch's manifest, then move each batched file from
    ``incoming/<claim>/`` to ``batches/<batch>/<entry>``.

    Idempotent: a file already moved is skipped, so a restart can finish the job.
    """
    target = work.batch_dir(batch_id)
    work.write_manifest(batch_id, provider, records)
    for record in records:
        assert record.entry is not None
        source = work.claim_dir(record.id) / record.source
        try:
            os.rename(source, target / record.entry)
        except FileNotFoundError:
            if not os.path.lexists(target / record.entry):
                raise
        _remove_empty_dirs(work.claim_dir(record.id), source.parent)
    files.fsync_dir(target)
    files.fsync_dir(work.incoming)


def _remove_empty_dirs(top: Path, start: Path) -> None:
    folder = start
    while True:
        try:
            folder.rmdir()
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            if exc.errno != errno.ENOENT:
                raise
        if folder == top:
            return
        folder = folder.parent
