"""Publishing results: outputs and sidecars into the outbox, failures into errors.

Rules (the promises "nothing overwritten, nothing half-written, nothing lost"):

* Output names are chosen and recorded in the store before anything is published.
  A restart finds the recorded names; an output already there with the right hash
  is not written again.
* Publishing never replaces: a temp file in the target folder is fsynced, then
  ``link()``-ed to its name. A taken name moves the whole group (signed file,
  detached signature, sidecar) to one shared suffix ``-1``, ``-2``, …
* The sidecar is written after the outputs are durable; originals are archived or
  deleted only after outputs and sidecars are durable (``finish``).
* A full, read-only or vanished outbox is :class:`OutboxUnavailable`: the job waits
  and nothing is deleted from the work folder. A name the outbox's filesystem
  refuses fails that one file, which goes to errors with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from folderseal import batch as batching
from folderseal import crashpoints, files, sidecar
from folderseal.config import FolderConfig
from folderseal.errors import FileRejected, OutboxUnavailable
from folderseal.logs import get as get_logger
from folderseal.model import DocumentResult, FileRecord, FileState, JobRecord
from folderseal.safety import open_claimed, open_dir, open_relative_dir
from folderseal.store import Store
from folderseal.workdir import WorkFolder

ERROR_SUFFIX = ".error.json"


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


class _NameTaken(Exception):
    """A name of the output group turned out to be taken: move the group on."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What the sink needs to know about the batch a file came in."""

    job: JobRecord | None
    provider_name: str
    provider_kind: str
    batch_files: int
    job_events: list[tuple[str, float]]


def _split(relative: str) -> tuple[str, str]:
    head, _, name = relative.rpartition("/")
    return head, name


def _join(head: str, name: str) -> str:
    return f"{head}/{name}" if head else name


class Sink:
    """Publishes the results of one folder."""

    def __init__(self, name: str, cfg: FolderConfig, work: WorkFolder, store: Store,
                 node: str) -> None:
        self.name = name
        self.cfg = cfg
        self.work = work
        self.store = store
        self.node = node
        self.log = get_logger(folder=name)

    # -- where things are -------------------------------------------------------

    def open_original(self, record: FileRecord) -> int:
        """Open a claimed file where it waits, refusing anything but the claimed file."""
        if record.state == FileState.CLAIMED or record.entry is None:
            head, name = _split(record.source)
            root = open_dir(self.work.claim_dir(record.id))
            parts = tuple(head.split("/")) if head else ()
        else:
            name = record.entry
            root = open_dir(self.work.batch_dir(record.batch_id or ""))
            parts = ()
        try:
            folder = open_relative_dir(root, parts)
        finally:
            os.close(root)
        try:
            return open_claimed(folder, name, record.dev, record.ino)
        finally:
            os.close(folder)

    def original_path(self, record: FileRecord) -> Path:
        if record.state == FileState.CLAIMED or record.entry is None:
            return self.work.claim_dir(record.id) / record.source
        return self.work.batch_dir(record.batch_id or "") / record.entry

    # -- delivery ------------------------------------------------------------------

    def deliver(self, records: list[FileRecord], ctx: JobContext,
                keep_lease: Callable[[], None]) -> None:
        """Publish every READY file and sink every REJECTED one; mark them in the store.

        Names are recorded for the whole batch in one transaction; then all outputs
        are placed, each folder they went to is synced once, then all sidecars, and
        their folders synced once again. A name found taken on the way sends that one
        file down the careful path (:meth:`_publish_alone`).
        """
        self._require_root(self.cfg.outbox, "outbox")
        ready = [r for r in records if r.state == FileState.READY]
        plans: dict[str, list[dict[str, Any]]] = {}
        retried: set[str] = set()
        rejected: dict[str, FileRejected] = {}
        with self.store.transaction():
            for record in ready:
                if record.outputs:
                    plans[record.id] = [dict(o) for o in record.outputs]
                    retried.add(record.id)  # a run before this one may have left temps
                    continue
                try:
                    plans[record.id] = self._plan(record, 0)
                except FileRejected as exc:
                    rejected[record.id] = exc
        alone: set[str] = set()
        for phase in ("outputs", "sidecars"):
            keep_lease()  # a node whose lease expired must not publish
            folders: set[Path] = set()
            for record in ready:
                if record.id in rejected or record.id in alone:
                    continue
                try:
                    folder = self._folder_of(record, retried)
                    if phase == "outputs":
                        self._place_outputs(record, plans[record.id])
                    else:
                        self._place_sidecar(record, plans[record.id], ctx)
                    folders.add(folder)
                except _NameTaken:
                    alone.add(record.id)
                except FileRejected as exc:
                    self._undo_group(plans[record.id])
                    rejected[record.id] = exc
                except OSError as exc:
                    raise self._translate(exc, self.cfg.outbox) from None
            for folder in folders:
                files.fsync_dir(folder)
            if phase == "outputs":
                crashpoints.reached("output-published")
        for record in ready:
            if record.id in alone:
                keep_lease()
                try:
                    self._publish_alone(record, plans[record.id], ctx)
                except FileRejected as exc:
                    rejected[record.id] = exc
        self._mark(ready, plans, rejected)
        refreshed = {r.id: r for r in self.store.files_of_job(ctx.job.id)} if ctx.job else {}
        for record in records:
            current = refreshed.get(record.id, record)
            if current.state == FileState.REJECTED:
                self.fail(current, ctx)

    def _mark(self, ready: list[FileRecord], plans: dict[str, list[dict[str, Any]]],
              rejected: dict[str, FileRejected]) -> None:
        with self.store.transaction():
            for record in ready:
                problem = rejected.get(record.id)
                if record.id not in plans and problem is None:
                    continue
                if problem is None:
                    self.store.set_file_state(record.id, FileState.READY, FileState.PUBLISHED,
                                              job_id=record.batch_id,
                                              detail=plans[record.id][0]["path"])
                else:
                    self.store.set_file_result(record.id, FileState.READY, DocumentResult(
                        entry=record.entry or "", error_code=problem.code,
                        error_message=problem.message), job_id=record.batch_id)
        for record in ready:
            if record.id not in rejected:
                self.log.info("file.delivered", file=record.id, source=record.source,
                              batch=record.batch_id)

    def _folder_of(self, record: FileRecord, retried: set[str]) -> Path:
        folder = self.cfg.outbox / _split(record.source)[0]
        self._makedirs(folder)
        if record.id in retried:
            files.remove_leftovers(folder, record.id)
        return folder

    def _place_outputs(self, record: FileRecord, plan: list[dict[str, Any]]) -> None:
        for output in plan[:-1]:
            dest = self.cfg.outbox / output["path"]
            if not self._is_ours(dest, output["sha256"]):
                self._place(record, output, dest)

    def _place_sidecar(self, record: FileRecord, plan: list[dict[str, Any]],
                       ctx: JobContext) -> None:
        dest = self.cfg.outbox / plan[-1]["path"]
        if not self._is_our_sidecar(dest, record):
            body = sidecar.signed(record, plan[:-1], **self._common(record, ctx))
            self._write(dest.parent, dest.name, body, record.id)

    def _undo_group(self, plan: list[dict[str, Any]]) -> None:
        """Remove outputs of a group this run placed (they hold exactly our bytes)."""
        for output in plan[:-1]:
            dest = self.cfg.outbox / output["path"]
            with contextlib.suppress(_NameTaken, OSError):
                if self._is_ours(dest, output["sha256"]):
                    dest.unlink()

    def _publish_alone(self, record: FileRecord, plan: list[dict[str, Any]],
                       ctx: JobContext) -> None:
        """One group, synced step by step; a taken name moves the group to the next suffix."""
        folder = self.cfg.outbox / _split(record.source)[0]
        while True:
            try:
                self._place_outputs(record, plan)
                files.fsync_dir(folder)
                self._place_sidecar(record, plan, ctx)
                files.fsync_dir(folder)
                return
            except _NameTaken:
                self._undo_group(plan)
                with self.store.transaction():
                    plan = self._plan(record, int(plan[-1]["n"]) + 1)
            except FileRejected:
                self._undo_group(plan)
                raise
            except OSError as exc:
                raise self._translate(exc, folder) from None

    def _plan(self, record: FileRecord, start: int) -> list[dict[str, Any]]:
        """Choose and record the first suffix from ``start`` at which the group's names
        are all free."""
        assert record.result is not None
        head, name = _split(record.source)
        folder = self.cfg.outbox / head
        for n in range(start, files.MAX_NUMBERED):
            primary = files.numbered(name, n)
            names = [primary + o.suffix for o in record.result.outputs] + [primary + ".json"]
            if not any(os.path.lexists(folder / candidate) for candidate in names):
                plan = [{"role": o.role, "path": _join(head, primary + o.suffix),
                         "staged": o.staged, "sha256": o.sha256, "bytes": o.bytes, "n": n}
                        for o in record.result.outputs]
                plan.append({"role": "sidecar", "path": _join(head, primary + ".json"),
                             "n": n})
                self.store.set_file_outputs(record.id, plan)
                return plan
        raise FileRejected("name_exhausted", f"{files.MAX_NUMBERED} outputs named like "
                           f"{name!r} exist already in the outbox; clear some out")

    def _place(self, record: FileRecord, output: dict[str, Any], dest: Path) -> None:
        """Publish one output at ``dest`` from its staged file (or the original)."""
        original = output["role"] == "original"
        if original:
            src_fd = self.open_original(record)
            src = self.original_path(record)
        else:
            src = Path(output["staged"])
            src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            # On the outbox's filesystem, the file itself gets its final name: no copy.
            # Not an original that is to be archived: the two must not share an inode.
            if (not original or self.cfg.archive is None) and \
                    self._same_device(src_fd, dest.parent):
                digest, _ = files.hash_fd(src_fd)
                self._check_hash(record, output, digest)
                try:
                    os.fchmod(src_fd, self.cfg.file_mode)
                    os.fsync(src_fd)
                    self._link(src, dest)
                    return
                except PermissionError:
                    pass  # another user's file (not ours to chmod or to link): copy it
            with files.temp_file(dest.parent, 0o600, record.id) as (fd, tmp):
                digest, _ = files.copy_fd(src_fd, fd)
                self._check_hash(record, output, digest)
                os.fchmod(fd, self.cfg.file_mode)
                os.fsync(fd)
                self._link(tmp, dest)
        finally:
            os.close(src_fd)

    @staticmethod
    def _same_device(fd: int, folder: Path) -> bool:
        return os.fstat(fd).st_dev == os.stat(folder).st_dev

    @staticmethod
    def _check_hash(record: FileRecord, output: dict[str, Any], digest: str) -> None:
        if digest != output["sha256"]:
            raise FileRejected(
                "output_changed",
                f"the {output['role']} output changed after it was produced (sha256 "
                f"{digest[:12]}… instead of {output['sha256'][:12]}…); it was not published")

    def _link(self, src: Path, dest: Path) -> None:
        try:
            files.link_noreplace(src, dest)
        except FileExistsError:
            raise _NameTaken() from None
        except OSError as exc:
            if exc.errno in files.NAME_ERRNOS:
                raise FileRejected(
                    "name_refused",
                    f"the outbox's filesystem refused the name {dest.name!r} "
                    f"({exc.strerror}); rename the file and drop it again") from None
            raise

    def _write(self, folder: Path, name: str, body: bytes, tag: str) -> None:
        try:
            files.write_new(folder, name, body, self.cfg.file_mode, tag)
        except FileExistsError:
            raise _NameTaken() from None
        except OSError as exc:
            if exc.errno in files.NAME_ERRNOS:
                raise FileRejected(
                    "name_refused",
                    f"the outbox's filesystem refused the name {name!r} ({exc.strerror}); "
                    "rename the file and drop it again") from None
            raise

    @staticmethod
    def _is_ours(dest: Path, sha256: str) -> bool:
        """True if ``dest`` holds exactly this output; _NameTaken if something else."""
        if not os.path.lexists(dest):
            return False
        try:
            digest, _ = files.hash_path(dest)
        except OSError:
            raise _NameTaken() from None
        if digest != sha256:
            raise _NameTaken()
        return True

    @staticmethod
    def _is_our_sidecar(dest: Path, record: FileRecord) -> bool:
        if not os.path.lexists(dest):
            return False
        try:
            data = json.loads(dest.read_bytes())
            ours = (data["input"]["sha256"] == record.sha256
                    and data["batch"]["id"] == record.batch_id)
        except (OSError, ValueError, KeyError, TypeError):
            ours = False
        if not ours:
            raise _NameTaken()
        return True

    def _common(self, record: FileRecord, ctx: JobContext,
                end: str = "delivered") -> dict[str, Any]:
        document = (record.result.provider_document if record.result else "") or \
            (record.entry or "")
        steps = sidecar.timeline(record, ctx.job, ctx.job_events,
                                 (end, self.store.clock()))
        return {"provider_name": ctx.provider_name, "provider_kind": ctx.provider_kind,
                "job": ctx.job, "batch_files": ctx.batch_files, "document": document,
                "node": self.node, "steps": steps}

    # -- failures ------------------------------------------------------------------

    def fail(self, record: FileRecord, ctx: JobContext) -> None:
        """Move a rejected (or claimed) file's original to errors and write its record."""
        code = record.error_code or "failed"
        message = record.error_message or "failed"
        self._require_root(self.cfg.errors, "errors")
        head, name = _split(record.source)
        folder = self.cfg.errors / head
        planned = next((dict(o) for o in record.outputs if o.get("role") == "error"), None)
        try:
            self._makedirs(folder)
            files.remove_leftovers(folder, record.id)
            if planned is None:
                planned = self._plan_error(record, folder, head, name)
            try:
                kept, note = self._sink_original(record, planned)
            except OSError as exc:
                if exc.errno not in files.NAME_ERRNOS:
                    raise
                # The errors folder refuses the name too: use a plain ASCII one.
                planned = self._plan_error(record, folder, head, batching.safe_name(name, 80),
                                           prefix=record.id[-8:] + "_")
                kept, note = self._sink_original(record, planned)
            body = sidecar.failed(record, code, message + note, record.attempts, kept,
                                  **self._common(record, ctx, end="failed"))
            record_name = Path(planned["path"]).name + ERROR_SUFFIX
            if not os.path.lexists(folder / record_name):
                files.write_new(folder, record_name, body, self.cfg.file_mode, record.id)
            files.fsync_dir(folder)
        except OSError as exc:
            raise self._translate(exc, folder) from None
        self.store.set_file_state(record.id, record.state, FileState.FAILED,
                                  job_id=record.batch_id, detail=code)
        self.log.warning("file.failed", file=record.id, source=record.source, code=code,
                         reason=message + note, errors=str(self.cfg.errors / planned["path"]))

    def _sink_original(self, record: FileRecord, planned: dict[str, Any]) -> tuple[str, str]:
        """Move the original to its planned place in errors; where it is, and a note."""
        original = self.original_path(record)
        target = self.cfg.errors / planned["path"]
        if not os.path.lexists(original):
            return planned["path"], ""  # moved before a crash
        try:
            files.move_noreplace(original, target, tag=record.id)
        except OSError as exc:
            if exc.errno in files.NAME_ERRNOS or os.access(original, os.R_OK,
                                                           follow_symlinks=False):
                raise
            # Unreadable, and the errors folder is on another filesystem: it cannot be
            # copied. It stays in the work folder, and the record says where.
            return str(original), (f" (it could not be moved to the errors folder: "
                                   f"{exc.strerror}; it is at {original})")
        return planned["path"], ""

    def _plan_error(self, record: FileRecord, folder: Path, head: str, name: str,
                    prefix: str = "") -> dict[str, Any]:
        """Choose and record the name the original gets in the errors folder."""
        if len(os.fsencode(prefix + name + ERROR_SUFFIX)) + 6 > _name_max(folder):
            # No room for "-N.error.json": keep the record readable under a short name.
            prefix, name = record.id[-8:] + "_", batching.safe_name(name, 80)
        for n in range(files.MAX_NUMBERED):
            candidate = prefix + files.numbered(name, n)
            taken = (os.path.lexists(folder / candidate)
                     or os.path.lexists(folder / (candidate + ERROR_SUFFIX)))
            if not taken:
                planned = {"role": "error", "path": _join(head, candidate), "n": n}
                self.store.set_file_outputs(record.id, [planned])
                return planned
        raise OutboxUnavailable(f"the errors folder {folder} has {files.MAX_NUMBERED} files "
                                f"named like {name!r}; clear some out")

    # -- after delivery ------------------------------------------------------------

    def finish(self, records: list[FileRecord]) -> None:
        """Archive or delete the originals of published files (idempotent)."""
        published = [r for r in records if r.state == FileState.PUBLISHED]
        for record in published:
            original = self.original_path(record)
            try:
                if self.cfg.archive is not None:
                    if os.path.lexists(original):
                        self._archive(record, original)
                else:
                    original.unlink(missing_ok=True)
            except OSError as exc:
                raise self._translate(exc, self.cfg.archive or original.parent) from None
        with self.store.transaction():
            for record in published:
                self.store.set_file_state(record.id, FileState.PUBLISHED, FileState.DONE,
                                          job_id=record.batch_id)

    def _archive(self, record: FileRecord, original: Path) -> None:
        assert self.cfg.archive is not None
        self._require_root(self.cfg.archive, "archive")
        head, name = _split(record.source)
        folder = self.cfg.archive / head
        self._makedirs(folder)
        for n in range(files.MAX_NUMBERED):
            try:
                files.move_noreplace(original, folder / files.numbered(name, n))
                return
            except FileExistsError:
                continue
        raise OutboxUnavailable(f"the archive folder {folder} is crowded with {name!r}")

    # -- helpers -------------------------------------------------------------------

    def _require_root(self, root: Path, key: str) -> None:
        if not root.is_dir():
            raise OutboxUnavailable(
                f"the {key} folder {root} is not there (a share not mounted?); "
                "folderseal waits for it and retries")

    def _makedirs(self, folder: Path) -> None:
        try:
            files.makedirs(folder)
        except OSError as exc:
            if exc.errno in files.NAME_ERRNOS:
                raise FileRejected("name_refused", f"the filesystem refused the folder name "
                                   f"{folder.name!r} ({exc.strerror})") from None
            raise

    @staticmethod
    def _translate(exc: OSError, folder: Path) -> Exception:
        if exc.errno in files.TRANSIENT_ERRNOS:
            return OutboxUnavailable(f"cannot write to {folder}: {exc.strerror}; folderseal "
                                     "keeps the files in its work folder and retries")
        return exc
