"""The errors folder: where a file that cannot be sealed goes, with the reason.

The original moves to ``errors/<relative path>`` (its name is chosen and recorded in
the store first, ``-N`` if taken) and ``<name>.error.json`` is written beside it. A
name the errors folder's filesystem refuses too (too long, ``:`` on SMB) gets a
short ASCII one, and the record keeps the original name. An original that cannot be
moved (unreadable, and the errors folder on another filesystem) stays in the work
folder, and the record says where.

The store records which file went there, (device, inode) and sha256, so that
``folderseal retry`` acts on that very file and never on another that took its name,
and so that a failure whose original the operator removed, moved away or replaced is
known as such (``CLEARED``): :meth:`Failures.reconcile` looks on every rescan.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal import batch as batching
from folderseal import files, metrics, sidecar
from folderseal.config import FolderConfig
from folderseal.errors import FileRejected, OutboxUnavailable, StateConflict
from folderseal.folders import (
    JobContext,
    join,
    makedirs,
    record_fields,
    require_root,
    split,
    translate,
)
from folderseal.logs import get as get_logger
from folderseal.model import FileRecord, FileState
from folderseal.safety import READ_FLAGS
from folderseal.store import Store
from folderseal.workdir import WorkFolder

ERROR_SUFFIX = ".error.json"


@dataclass(frozen=True, slots=True)
class Found:
    """Where the original of a failure lies in the errors folder, or why it is not there."""

    path: Path | None
    problem: str = ""
    gone: bool = False         # certainly not there any more: removed, moved away, replaced
    sha256: str | None = None  # as found now (when asked for)


def identity(path: Path, hashed: bool = True) -> dict[str, Any]:
    """(device, inode) of the file at ``path`` and, if asked and it is a regular file
    folderseal may read, its sha256; {} if there is no file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    found: dict[str, Any] = {"dev": st.st_dev, "ino": st.st_ino, "sha256": None}
    if hashed and stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(path, READ_FLAGS)
        except OSError:
            return found  # unreadable (perhaps why it failed): known by inode only
        try:
            if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == (st.st_dev, st.st_ino):
                found["sha256"] = files.hash_fd(fd)[0]
        finally:
            os.close(fd)
    return found


def find_original(errors: Path, record: FileRecord, hashed: bool = False) -> Found:
    """The very file the failure put into ``errors``, by (device, inode) and, with
    ``hashed``, sha256 as recorded then. Failures recorded before these were kept are
    found by name."""
    planned = next((o for o in record.outputs if o.get("role") == "error"), None)
    if planned is None:
        return Found(None, "no place in the errors folder was recorded for it")
    path = errors / str(planned["path"])
    try:
        root_dev = os.stat(errors).st_dev
        now = identity(path, hashed)
    except OSError as exc:
        return Found(None, f"the errors folder {errors} cannot be read ({exc.strerror}): "
                           "mount its share, or fix its permissions")
    recorded = (planned.get("dev"), planned.get("ino"))
    # An errors folder on another device (an empty mount point) proves nothing gone.
    sure = recorded[0] == root_dev
    if not now:
        return Found(None, f"it is gone from the errors folder ({path} was removed or moved "
                           "away by hand)", gone=sure)
    if recorded[1] is not None and (now["dev"], now["ino"]) != recorded:
        return Found(None, f"the file now at {path} is not the one that failed there (another "
                           "failure of the same name took the name, or the file was "
                           "replaced); drop the file you want sealed into the inbox", gone=sure)
    if hashed and planned.get("sha256") and now["sha256"] != planned["sha256"]:
        return Found(None, f"{path} was changed since it failed: retry puts back only the file "
                           "that failed; to seal the changed one, move it into the inbox and "
                           f"delete {path.name}{ERROR_SUFFIX}")
    return Found(path, sha256=now["sha256"])


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


class Failures:
    """Puts the rejected files of one folder into its errors folder."""

    def __init__(self, name: str, cfg: FolderConfig, work: WorkFolder, store: Store,
                 node: str) -> None:
        self.name = name
        self.cfg = cfg
        self.work = work
        self.store = store
        self.node = node
        self.log = get_logger(folder=name)

    def fail(self, record: FileRecord, ctx: JobContext) -> None:
        """Move a rejected (or claimed) file's original to errors and write its record."""
        code = record.error_code or "failed"
        message = record.error_message or "failed"
        require_root(self.cfg.errors, "errors")
        planned = next((dict(o) for o in record.outputs if o.get("role") == "error"), None)
        try:
            kept, note, planned = self._sink_original(record, planned)
            placed = identity(self.cfg.errors / kept) \
                if kept == planned["path"] and "ino" not in planned else {}
            if placed:
                planned = {**planned, **placed}
                self.store.set_file_outputs(record, [planned], "errors")
            folder = (self.cfg.errors / planned["path"]).parent
            fields = record_fields(record, ctx, self.node, "failed", self.store.clock())
            body = sidecar.failed(record, code, message + note, record.attempts, kept, **fields)
            record_name = Path(planned["path"]).name + ERROR_SUFFIX
            if not os.path.lexists(folder / record_name):
                files.write_new(folder, record_name, body, self.cfg.file_mode, record.id)
            files.fsync_dir(folder)
        except OSError as exc:
            raise translate(exc, self.cfg.errors) from None
        self.store.set_file_state(record.id, record.state, FileState.FAILED,
                                  job_id=record.batch_id, detail=code)
        metrics.FILES_FAILED.labels(record.folder, code).inc()
        self.log.warning("file.failed", file=record.id, source=record.source, code=code,
                         reason=message + note, errors=str(self.cfg.errors / planned["path"]))

    def reconcile(self) -> None:
        """Mark the failures whose original is no longer in the errors folder ``CLEARED``,
        so that ``status`` lists only what is there."""
        for record in self.store.files_in_state(self.name, FileState.FAILED):
            found = find_original(self.cfg.errors, record)
            if not found.gone:
                continue
            try:
                self.store.set_file_state(record.id, FileState.FAILED, FileState.CLEARED,
                                          detail=found.problem)
            except StateConflict:
                continue  # `folderseal retry` took it meanwhile
            self.log.info("file.cleared", file=record.id, source=record.source,
                          reason=found.problem)

    def _sink_original(self, record: FileRecord, planned: dict[str, Any] | None,
                       ) -> tuple[str, str, dict[str, Any]]:
        """Move the original to its place in errors: where it is, a note, and the plan.

        A name found taken moves on to the next ``-N``; a name (or folder name) the
        errors folder's filesystem refuses falls back to a short ASCII name at its top.
        """
        original = self.work.path_of(record)
        plain = False
        while True:
            if planned is None:
                try:
                    planned = self._plan(record, 0, plain)
                except FileRejected:  # a folder name the filesystem refuses
                    plain = True
                    continue
            target = self.cfg.errors / planned["path"]
            if not os.path.lexists(original):
                return planned["path"], "", planned  # moved before a crash
            files.remove_leftovers(target.parent, record.id)
            try:
                files.move_noreplace(original, target, tag=record.id)
                return planned["path"], "", planned
            except FileExistsError:  # someone took the name meanwhile
                planned = self._plan(record, int(planned["n"]) + 1, bool(planned.get("plain")))
            except OSError as exc:
                if exc.errno in files.NAME_ERRNOS and not planned.get("plain"):
                    planned, plain = None, True
                    continue
                if exc.errno in files.NAME_ERRNOS or os.access(original, os.R_OK,
                                                               follow_symlinks=False):
                    raise
                # Unreadable, and the errors folder is on another filesystem: it cannot
                # be copied. It stays in the work folder, and the record says where.
                return str(original), (f" (it could not be moved to the errors folder: "
                                       f"{exc.strerror}; it is at {original})"), planned

    def _plan(self, record: FileRecord, start: int, plain: bool) -> dict[str, Any]:
        """Choose, record and reserve the name the original gets in the errors folder."""
        head, name = split(record.source)
        prefix = ""
        if plain:
            head, prefix, name = "", record.id[-8:] + "_", batching.safe_name(name, 80)
        folder = self.cfg.errors / head
        makedirs(folder, self.cfg.file_mode)
        if len(os.fsencode(prefix + name + ERROR_SUFFIX)) + 6 > _name_max(folder):
            # No room for "-N.error.json": keep the record readable under a short name.
            prefix, name = record.id[-8:] + "_", batching.safe_name(name, 80)
        for n in range(start, files.MAX_NUMBERED):
            candidate = prefix + files.numbered(name, n)
            path = join(head, candidate)
            taken = (os.path.lexists(folder / candidate)
                     or os.path.lexists(folder / (candidate + ERROR_SUFFIX))
                     or not self.store.names_free(record.folder, "errors", record.id, [path]))
            if not taken:
                planned = {"role": "error", "path": path, "n": n, "plain": plain}
                self.store.set_file_outputs(record, [planned], "errors")
                return planned
        raise OutboxUnavailable(f"the errors folder {folder} has {files.MAX_NUMBERED} files "
                                f"named like {name!r}; clear some out")
