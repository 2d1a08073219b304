"""Output folders (outbox, errors, archive): relative names, roots, and what errors mean.

Shared by :mod:`folderseal.publish.sink` (publishing) and :mod:`folderseal.publish.failures` (the
errors
folder). A missing root is an outage (a share not mounted): it is never created. A
folder that is full, read-only or gone is transient: the batch waits and retries.
While a root is missing, not writable or not answering the intake claims nothing
(:func:`blocked`, looked at off the intake thread by :mod:`folderseal.publish.probe`): files wait,
visible, in the inbox instead of piling up in the work folder.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from folderseal.core import files
from folderseal.core.config import FolderConfig
from folderseal.core.errors import FileRejected, OutboxUnavailable
from folderseal.core.model import BatchRecord, Event, FileRecord
from folderseal.publish import sidecar


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What the sink needs to know about the batch a file came in."""

    batch: BatchRecord | None
    provider_name: str
    provider_kind: str
    outcome: str           # what its provider makes of a file: signed | stored | loaded
    batch_files: int
    history: list[Event]   # the batch's transitions and its files', in order
    # Where the batch's results may be staged, this holder's folder first, then earlier
    # holders' (fleet mode), newest first: a staged output is taken from the first that
    # holds it with the sha256 recorded.
    staged_in: tuple[Path, ...] = ()
    # A fenced store write (the batch's lease renewed in the store, LeaseLost if it was
    # taken over): made before a name found taken is given up for another, or a group
    # is undone, so a node that lost its lease re-plans and undoes nothing.
    fence: Callable[[], None] | None = None
    # history_of's index (each event with its place in history), made at its first use.
    _by_file: dict[str | None, list[tuple[int, Event]]] = field(
        default_factory=dict, compare=False, repr=False)
    # Each output folder this delivery made sure of, with its device: once per batch,
    # not once per file.
    _folders: dict[Path, int] = field(default_factory=dict, compare=False, repr=False)

    def folder_device(self, folder: Path, file_mode: int) -> int:
        """Make ``folder`` if it is missing (once per delivery); its device."""
        device = self._folders.get(folder)
        if device is None:
            makedirs(folder, file_mode)
            device = self._folders[folder] = os.stat(folder).st_dev
        return device

    def history_of(self, file_id: str) -> list[Event]:
        """The batch's transitions and the events of one of its files, in order: all a
        file's timeline reads (reading the whole history for each file made publishing
        a batch take time in the square of its size)."""
        if not self._by_file:
            for place, event in enumerate(self.history):
                self._by_file.setdefault(event.file_id, []).append((place, event))
        merged = heapq.merge(self._by_file.get(None, []), self._by_file.get(file_id, []))
        return [event for _, event in merged]

    @property
    def epoch(self) -> int | None:
        """The lease epoch of the batch's holder (None for a file with no batch)."""
        return self.batch.epoch if self.batch is not None else None

    def fenced(self) -> None:
        if self.fence is not None:
            self.fence()


@dataclass(frozen=True, slots=True)
class Blocked:
    """An output folder a folder cannot use now: nothing is claimed until it can."""

    reason: str    # "<outbox|errors|archive>_<missing|not_writable|not_answering>": a label
    message: str   # which folder, and what to do


OUTPUT_ROOTS = ("outbox", "errors", "archive")
BLOCK_REASONS = tuple(f"{key}_{why}" for key in OUTPUT_ROOTS
                      for why in ("missing", "not_writable", "not_answering"))
UNTIL = "files wait in the inbox until"


def blocked(cfg: FolderConfig) -> list[Blocked]:
    """The output folders of ``cfg`` that are missing or that folderseal may not write."""
    return [b for key in OUTPUT_ROOTS if (b := blocked_root(key, getattr(cfg, key)))]


def blocked_root(key: str, root: Path | None) -> Blocked | None:
    """Why the ``key`` folder ``root`` cannot take outputs now (None if it can)."""
    if root is None:
        return None
    try:
        is_dir = stat.S_ISDIR(os.stat(root).st_mode)
    except PermissionError:  # a folder above it is closed to folderseal
        return Blocked(f"{key}_not_writable", (
            f"folderseal (uid {os.geteuid()}) may not reach the {key} folder {root}: a "
            f"folder above it is closed to it; fix that folder's permissions; {UNTIL} it "
            "can"))
    except OSError:  # not there, or a share that answers with an error
        is_dir = False
    if not is_dir:
        return Blocked(f"{key}_missing", (
            f"the {key} folder {root} is not there: mount its share, or create it; "
            f"{UNTIL} it is back"))
    if not os.access(root, os.W_OK | os.X_OK):
        return Blocked(f"{key}_not_writable", (
            f"folderseal (uid {os.geteuid()}) may not write to the {key} folder {root}: "
            f"fix its permissions; {UNTIL} it can"))
    return None


def not_answering(key: str, root: Path, seconds: float) -> Blocked:
    """The ``key`` folder has not answered a look for ``seconds`` or more."""
    return Blocked(f"{key}_not_answering", (
        f"the {key} folder {root} has not answered for over {seconds:.0f} s (a hung "
        f"share?): check its share and the network to its server; {UNTIL} it answers"))


def split(relative: str) -> tuple[str, str]:
    """``"a/b/c.pdf"`` → ``("a/b", "c.pdf")``."""
    head, _, name = relative.rpartition("/")
    return head, name


def join(head: str, name: str) -> str:
    return f"{head}/{name}" if head else name


def require_root(root: Path, key: str) -> None:
    """A missing outbox, errors or archive root is an outage; it is never created."""
    if not root.is_dir():
        raise OutboxUnavailable(
            f"the {key} folder {root} is not there (a share not mounted?); "
            "folderseal waits for it and retries")


def makedirs(folder: Path, file_mode: int) -> None:
    """A folder below an outbox, errors or archive root, readable as its files are."""
    try:
        files.makedirs(folder, files.folder_mode(file_mode))
    except OSError as exc:
        if exc.errno in files.NAME_ERRNOS:
            raise FileRejected("name_refused", f"the filesystem refused the folder name "
                               f"{folder.name!r} ({exc.strerror})") from None
        raise


def translate(exc: OSError, folder: Path) -> Exception:
    """A full, read-only or vanished folder is transient: wait; anything else stays."""
    if exc.errno in files.TRANSIENT_ERRNOS:
        return OutboxUnavailable(f"cannot write to {folder}: {exc.strerror}; folderseal "
                                 "keeps the files in its work folder and retries")
    return exc


def record_fields(record: FileRecord, ctx: BatchContext, node: str, end: str,
                  at: float) -> dict[str, Any]:
    """The sidecar fields every record of ``record`` shares, its timeline ending ``end``."""
    document = (record.result.provider_document if record.result else "") or \
        (record.entry or "")
    steps = sidecar.timeline(record, ctx.batch, ctx.history_of(record.id), (end, at),
                             outcome=ctx.outcome)
    return {"provider_name": ctx.provider_name, "provider_kind": ctx.provider_kind,
            "batch": ctx.batch, "batch_files": ctx.batch_files, "document": document,
            "node": node, "steps": steps}
