"""The errors folder: where a file that cannot be sealed goes, with the reason.

The original moves to ``errors/<relative path>`` (its name is chosen and recorded in
the store first, ``-N`` if taken) and ``<name>.error.json`` is written beside it. A
name the errors folder's filesystem refuses too (too long, ``:`` on SMB) gets a
short ASCII one, and the record keeps the original name. An original that cannot be
moved (unreadable, and the errors folder on another filesystem) stays in the work
folder, and the record says where.

The store records which file went there (:mod:`folderseal.publish.errorfiles`), so that
``folderseal retry`` acts on that very file and never on another that took its name,
and so that a failure whose original the operator removed, moved away or replaced is
known as such (``CLEARED``), and known again when it is back: :meth:`Failures.reconcile`
looks on every rescan, and finishes retries a crash interrupted.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from folderseal.core import files, metrics
from folderseal.core.config import FolderConfig
from folderseal.core.errors import FileRejected, OutboxUnavailable, StateConflict
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileRecord, FileState
from folderseal.core.safety import safe_name
from folderseal.publish import errorfiles, retrying, sidecar
from folderseal.publish.errorfiles import ERROR_SUFFIX, find_original, place_of
from folderseal.publish.folders import (
    BatchContext,
    join,
    makedirs,
    record_fields,
    require_root,
    split,
    translate,
)
from folderseal.store import Store
from folderseal.work import WorkFolder


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
        # The folders of cleared failures' places as the last reconcile saw them.
        self._folders: dict[Path, tuple[int, ...] | None] = {}

    def fail(self, record: FileRecord, ctx: BatchContext) -> None:
        """Move a rejected (or claimed) file's original to errors and write its record."""
        code = record.error_code or "failed"
        message = record.error_message or "failed"
        require_root(self.cfg.errors, "errors")
        planned = next((dict(o) for o in record.outputs if o.get("role") == "error"), None)
        try:
            folder_id = errorfiles.mark(self.cfg.errors, self.cfg.file_mode)
            kept, note, planned = self._sink_original(record, planned, ctx)
            placed = self._placed(kept, planned, folder_id)
            if placed:
                planned = {**planned, **placed}
                self.store.set_file_outputs(record, [planned], "errors")
            folder = (self.cfg.errors / planned["path"]).parent
            fields = record_fields(record, ctx, self.node, "failed", self.store.clock())
            body = sidecar.failed(record, code, message + note, record.attempts, kept, **fields)
            record_name = Path(planned["path"]).name + ERROR_SUFFIX
            if not os.path.lexists(folder / record_name):
                files.write_new(folder, record_name, body, self.cfg.file_mode, record.id,
                                ctx.epoch)
            files.fsync_dir(folder)
        except OSError as exc:
            raise translate(exc, self.cfg.errors) from None
        self.store.set_file_state(record.id, record.state, FileState.FAILED,
                                  batch_id=record.batch_id, detail=code)
        metrics.FILES_FAILED.labels(record.folder, code).inc()
        self.log.warning("file.failed", file=record.id, source=record.source, code=code,
                         reason=message + note, errors=str(self.cfg.errors / planned["path"]))

    def _placed(self, kept: str, planned: dict[str, Any], folder_id: str) -> dict[str, Any]:
        """What to record of where the original went, if not recorded yet: its identity
        and the errors folder's id, or (``kept``) where it stayed in the work folder."""
        if kept != planned["path"]:
            return {} if planned.get("kept") == kept else {"kept": kept}
        if "ino" in planned:
            return {}
        found = errorfiles.identity(self.cfg.errors / kept)
        return {**found, "folder_id": folder_id} if found else {}

    def reconcile(self) -> None:
        """Bring the store in line with the errors folder, so that ``status`` lists what
        is there: finish the retries a crash left (unless a retry is at work), mark
        failures whose original left the folder ``CLEARED``, and those whose very file is
        back ``FAILED`` again. A failure found by its content in an errors folder whose
        marker does not name it (recorded before folders had ids, or a deleted marker)
        makes this folder's marker name it."""
        with retrying.lock(self.store.state_dir, wait=0) as free:
            for record, outcome, ok in (retrying.settle(self.store, self.name, self.cfg)
                                        if free else []):
                (self.log.info if ok else self.log.warning)(
                    "retry.resumed", file=record.id, source=record.source, outcome=outcome)
        try:
            ids = errorfiles.folder_ids(self.cfg.errors)
        except OSError:
            return  # the folder is blocked for now (see folders.blocked); nothing is sure
        budget = errorfiles.ReadBudget()
        failed = self.store.files_in_state(self.name, FileState.FAILED)
        still = [r for r in failed if self._look_for(r, ids, budget)]
        taken = {str((place_of(r) or {}).get("path")) for r in still}
        cleared = self.store.files_in_state(self.name, FileState.CLEARED)
        looks: dict[Path, tuple[int, ...] | None] = {}
        for record in cleared:
            place = place_of(record) or {}
            if str(place.get("path")) in taken or not self._changed(place, looks):
                continue  # another failure's file is there now, or nothing came back
            found = find_original(self.cfg.errors, record, ids=ids, budget=budget)
            if found.hint is not None:
                self.store.set_error_place(record, {**place, **found.hint})
            if found.path is not None:
                self._mark(record, FileState.CLEARED, FileState.FAILED,
                           "its file is back in the errors folder")
        self._folders = looks
        self.log.debug("errors.reconciled", failed=len(failed), cleared=len(cleared),
                       read_bytes=budget.spent)

    def _look_for(self, record: FileRecord, ids: list[str], budget: errorfiles.ReadBudget,
                  ) -> bool:
        """Look for a failed file's original: record what changed of it, clear it if it
        is gone, and adopt its errors folder's id once its content is found here. False
        if it was cleared."""
        place = place_of(record) or {}
        unadopted = bool(place) and not place.get("kept") and place.get("folder_id") not in ids
        found = find_original(self.cfg.errors, record, hashed=unadopted, ids=ids, budget=budget)
        update = dict(found.hint or {})
        if unadopted and found.by_content:
            update["folder_id"] = self._adopt(record, str(place.get("folder_id") or ""))
            ids[:] = errorfiles.folder_ids(self.cfg.errors)
        if update:
            self.store.set_error_place(record, {**place, **update})
        if found.gone:
            self._mark(record, FileState.FAILED, FileState.CLEARED, found.problem)
        return not found.gone

    def _adopt(self, record: FileRecord, folder_id: str) -> str:
        """This errors folder holds ``record``'s original: its marker names the folder the
        failure went to (a failure recorded before folders had ids gets this one's)."""
        if folder_id:
            errorfiles.adopt(self.cfg.errors, folder_id, self.cfg.file_mode)
        else:
            folder_id = errorfiles.mark(self.cfg.errors, self.cfg.file_mode)
        self.log.info("errors.adopted", file=record.id, source=record.source,
                      folder_id=folder_id, marker=str(self.cfg.errors / errorfiles.MARKER))
        return folder_id

    def _changed(self, place: dict[str, Any], looks: dict[Path, tuple[int, ...] | None],
                 ) -> bool:
        """Whether the folder of a cleared failure's place gained or lost an entry since
        the last pass (or this is the first): only then can its file be back. Each
        folder is looked at once a pass."""
        folder = (self.cfg.errors / str(place.get("path"))).parent
        if folder not in looks:
            try:
                st = os.lstat(folder)
                looks[folder] = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            except OSError:
                looks[folder] = None
        return folder not in self._folders or self._folders[folder] != looks[folder]

    def _mark(self, record: FileRecord, from_state: FileState, to_state: FileState,
              why: str) -> None:
        try:
            self.store.set_file_state(record.id, from_state, to_state, detail=why)
        except StateConflict:
            return  # `folderseal retry` took it meanwhile
        self.log.info("file.cleared" if to_state == FileState.CLEARED else "file.found_again",
                      file=record.id, source=record.source, reason=why)

    def _sink_original(self, record: FileRecord, planned: dict[str, Any] | None,
                       ctx: BatchContext) -> tuple[str, str, dict[str, Any]]:
        """Move the original to its place in errors: where it is, a note, and the plan.

        A name found taken moves on to the next ``-N``, but only after a fenced store
        write (a node that lost the batch's lease picks no new name: LeaseLost); a name
        (or folder name) the errors folder's filesystem refuses falls back to a short
        ASCII name at its top. Temp names carry the batch's lease epoch, and only this
        epoch's or older leftovers are removed (a newer holder may be writing its own).
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
            files.remove_leftovers(target.parent, record.id, ctx.epoch)
            try:
                files.move_noreplace(original, target, tag=record.id, epoch=ctx.epoch)
                return planned["path"], "", planned
            except FileExistsError:  # someone took the name meanwhile
                ctx.fenced()
                planned = self._plan(record, int(planned["n"]) + 1, bool(planned.get("plain")))
            except OSError as exc:
                if exc.errno in files.NAME_ERRNOS and not planned.get("plain"):
                    planned, plain = None, True
                    continue
                if exc.errno in files.NAME_ERRNOS or (exc.errno != errno.EXDEV and os.access(
                        original, os.R_OK, follow_symlinks=False)):
                    raise
                # Unreadable or not a regular file (a FIFO), and the errors folder is on
                # another filesystem: it cannot be copied. It stays in the work folder,
                # and the record says where.
                return str(original), (f" (it could not be moved to the errors folder: "
                                       f"{exc.strerror}; it is at {original})"), planned

    def _plan(self, record: FileRecord, start: int, plain: bool) -> dict[str, Any]:
        """Choose, record and reserve the name the original gets in the errors folder."""
        head, name = split(record.source)
        prefix = ""
        if plain:
            head, prefix, name = "", record.id[-8:] + "_", safe_name(name, 80)
        folder = self.cfg.errors / head
        makedirs(folder, self.cfg.file_mode)
        if len(os.fsencode(prefix + name + ERROR_SUFFIX)) + 6 > _name_max(folder):
            # No room for "-N.error.json": keep the record readable under a short name.
            prefix, name = record.id[-8:] + "_", safe_name(name, 80)
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
