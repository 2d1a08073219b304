"""Publishing results: outputs and sidecars into the outbox, failures into errors.

Rules (the promises "nothing overwritten, nothing half-written, nothing lost"):

* Output names are chosen and recorded in the store before anything is published.
  A restart finds the recorded names; an output already there with the right hash
  is not written again.
* Publishing never replaces, and names only what is on disk: an output on the outbox's
  filesystem is fsynced (unless its provider did and its mode stays) and hard-linked to
  its name; otherwise a temp copy in the target folder is fsynced and given the name.
  A taken name moves the whole group (signed file, detached signature, sidecar) to one
  shared suffix ``-1``, ``-2``, …
* Late is harmless (fleet mode: a node may lose its lease between its check and a
  ``link()``): a staged output is published only with the sha256 the store recorded
  for it, found in the staging folder of whichever holder staged it; a name found
  taken is given up, and a group undone, only after a fenced store write (the lease
  renewed in the store: a node that lost it stops there, ``lease.lost``); an undo
  removes only a name that still holds the very inode this run gave it; temp names
  carry the batch's lease epoch.
* The sidecar is written after the outputs are durable; originals are archived or
  deleted only after outputs and sidecars are durable (``finish``).
* A full, read-only or vanished outbox is :class:`OutboxUnavailable`: the batch waits
  and nothing is deleted from the work folder. A name the outbox's filesystem
  refuses fails that one file, which goes to errors with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from folderseal.core import crashpoints, files, metrics
from folderseal.core.config import FolderConfig
from folderseal.core.errors import FileRejected, TransientError
from folderseal.core.logs import get as get_logger
from folderseal.core.model import DocumentResult, FileRecord, FileState
from folderseal.core.safety import open_dir
from folderseal.publish import naming, sidecar
from folderseal.publish.failures import Failures
from folderseal.publish.folders import (
    BatchContext,
    join,
    record_fields,
    require_root,
    split,
    translate,
)
from folderseal.store import Store
from folderseal.work import WorkFolder

_EUID = os.geteuid()  # whose files publishing may chmod and link (its own)


def _refused(record: FileRecord, problem: FileRejected) -> DocumentResult:
    """The result of a file the outbox refused: the provider's word on it (its document,
    its proof) stays for the error record; its outputs were not published."""
    if record.result is None:
        return DocumentResult(entry=record.entry or "", error_code=problem.code,
                              error_message=problem.message)
    return dataclasses.replace(record.result, outputs=(), error_code=problem.code,
                               error_message=problem.message, pending=False)


class Sink:
    """Publishes the results of one folder.

    Its methods are the publishing of one batch in its durable order (outputs, sidecars,
    originals) and the errors folder's moves; they share the folder's roots and the store."""

    def __init__(self, name: str, cfg: FolderConfig, work: WorkFolder, store: Store,
                 node: str) -> None:
        self.name = name
        self.cfg = cfg
        self.work = work
        self.store = store
        self.node = node
        self.log = get_logger(folder=name)
        self.failures = Failures(name, cfg, work, store, node)
        self.fail = self.failures.fail

    # -- delivery ------------------------------------------------------------------

    def deliver(self, records: list[FileRecord], ctx: BatchContext,
                keep_lease: Callable[[], None]) -> None:
        """Publish every READY file and sink every REJECTED one; mark them in the store.

        Names are recorded for the whole batch in one transaction; then all outputs
        are placed, each folder they went to is synced once, then all sidecars, and
        their folders synced once again. A name found taken on the way sends that one
        file down the careful path (:meth:`_publish_alone`).
        """
        require_root(self.cfg.outbox, "outbox")
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
        made: dict[Path, tuple[int, int]] = {}  # each name this run gave: its inode
        for phase in ("outputs", "sidecars"):
            keep_lease()  # a node whose lease expired must not publish
            folders: set[Path] = set()
            for record in ready:
                if record.id in rejected or record.id in alone:
                    continue
                keep_lease()  # by this host's own count: cheap, so before each file
                try:
                    folder = self._folder_of(record, retried, ctx)
                    # Names planned just now were free: one taken since fails its link
                    # (NameTaken), and the careful path below looks at what is there.
                    look = record.id in retried
                    if phase == "outputs":
                        self._place_outputs(record, plans[record.id], ctx, made, look)
                    else:
                        self._place_sidecar(record, plans[record.id], ctx, look)
                    folders.add(folder)
                except naming.NameTaken:
                    # A name taken after it was planned: someone else is publishing (a
                    # node that took the batch over?). Nothing more before a fenced write.
                    ctx.fenced()
                    alone.add(record.id)
                except FileRejected as exc:
                    ctx.fenced()  # a node that lost its lease undoes nothing
                    self._undo_group(plans[record.id], made)
                    rejected[record.id] = exc
                except OSError as exc:
                    raise translate(exc, self.cfg.outbox) from None
            for folder in folders:
                files.fsync_dir(folder)
            if phase == "outputs":
                crashpoints.reached("output-published")
        for record in ready:
            if record.id in alone:
                keep_lease()
                try:
                    self._publish_alone(record, plans[record.id], ctx, made)
                except FileRejected as exc:
                    rejected[record.id] = exc
        self._mark(ready, plans, rejected, ctx)
        if not rejected and all(r.state != FileState.REJECTED for r in records):
            return
        refreshed = {r.id: r for r in self.store.files_of_batch(ctx.batch.id)} if ctx.batch else {}
        for record in records:
            current = refreshed.get(record.id, record)
            if current.state == FileState.REJECTED:
                keep_lease()
                self.fail(current, ctx)

    def _mark(self, ready: list[FileRecord], plans: dict[str, list[dict[str, Any]]],
              rejected: dict[str, FileRejected], ctx: BatchContext) -> None:
        with self.store.transaction():
            for record in ready:
                problem = rejected.get(record.id)
                if record.id not in plans and problem is None:
                    continue
                if problem is None:
                    self.store.set_file_state(record.id, FileState.READY, FileState.PUBLISHED,
                                              batch_id=record.batch_id,
                                              detail=plans[record.id][0]["path"])
                else:
                    self.store.set_file_result(record.id, FileState.READY,
                                               _refused(record, problem),
                                               batch_id=record.batch_id)
        delivered = [record for record in ready if record.id not in rejected]
        for record in delivered:
            self.log.info("file.delivered", file=record.id, source=record.source,
                          batch=record.batch_id)
        metrics.count_delivered(self.name, ctx.provider_name, ctx.outcome, len(delivered))

    def _folder_of(self, record: FileRecord, retried: set[str], ctx: BatchContext) -> Path:
        folder = self.cfg.outbox / split(record.source)[0]
        ctx.folder_device(folder, self.cfg.file_mode)
        if record.id in retried:
            # Not a newer holder's temp files: it may be writing them now.
            files.remove_leftovers(folder, record.id, ctx.epoch)
        return folder

    def _place_outputs(self, record: FileRecord, plan: list[dict[str, Any]],
                       ctx: BatchContext, made: dict[Path, tuple[int, int]],
                       look: bool = True) -> None:
        """Publish each output of ``plan``; with ``look``, one already at its name (this
        very output: a run before placed it) is left as it is."""
        for output in plan[:-1]:
            dest = self.cfg.outbox / output["path"]
            if not (look and naming.is_ours(dest, output["sha256"])):
                made[dest] = self._place(record, output, dest, ctx)

    def _place_sidecar(self, record: FileRecord, plan: list[dict[str, Any]],
                       ctx: BatchContext, look: bool = True) -> None:
        dest = self.cfg.outbox / plan[-1]["path"]
        if not (look and naming.is_our_sidecar(dest, record)):
            fields = record_fields(record, ctx, self.node, "delivered", self.store.clock())
            body = sidecar.delivered(record, plan[:-1], outcome=ctx.outcome, **fields)
            self._write(dest.parent, dest.name, body, record.id, ctx.epoch)

    def _undo_group(self, plan: list[dict[str, Any]], made: dict[Path, tuple[int, int]],
                    ) -> None:
        """Remove the outputs of a group this run gave their names: only a name that
        still holds the very inode this run linked there (one another node published,
        even with the same bytes, is left alone)."""
        for output in plan[:-1]:
            dest = self.cfg.outbox / output["path"]
            ident = made.pop(dest, None)
            if ident is not None:
                with contextlib.suppress(OSError):
                    files.unlink_if_same(dest, ident)

    def _publish_alone(self, record: FileRecord, plan: list[dict[str, Any]],
                       ctx: BatchContext, made: dict[Path, tuple[int, int]]) -> None:
        """One group, synced step by step; a taken name moves the group to the next
        suffix, but only after a fenced store write: a node that lost its lease never
        undoes a group or picks new names (LeaseLost, and the batch is left to its
        holder)."""
        folder = self.cfg.outbox / split(record.source)[0]
        while True:
            try:
                self._place_outputs(record, plan, ctx, made)
                files.fsync_dir(folder)
                self._place_sidecar(record, plan, ctx)
                files.fsync_dir(folder)
                return
            except naming.NameTaken:
                ctx.fenced()
                self._undo_group(plan, made)
                with self.store.transaction():
                    plan = self._plan(record, int(plan[-1]["n"]) + 1)
            except FileRejected:
                ctx.fenced()
                self._undo_group(plan, made)
                raise
            except OSError as exc:
                raise translate(exc, folder) from None

    def _plan(self, record: FileRecord, start: int) -> list[dict[str, Any]]:
        """Choose and record the first suffix from ``start`` at which the group's names
        are all free."""
        assert record.result is not None
        head, name = split(record.source)
        folder = self.cfg.outbox / head
        for n in range(start, files.MAX_NUMBERED):
            primary = files.numbered(name, n)
            names = [primary + o.suffix for o in record.result.outputs] + [primary + ".json"]
            paths = [join(head, candidate) for candidate in names]
            # Free on disk (or holding exactly this output: a run whose record was lost
            # placed it), and not planned by another file still on its way out.
            free = naming.sidecar_free_or_ours(folder / names[-1], record) and all(
                naming.free_or_same(folder / candidate, o.sha256, o.bytes)
                for candidate, o in zip(names, record.result.outputs, strict=False))
            if free and self.store.names_free(record.folder, "outbox", record.id, paths):
                plan = [{"role": o.role, "path": path, "staged": o.staged, "sha256": o.sha256,
                         "bytes": o.bytes, "synced": o.synced, "n": n}
                        for o, path in zip(record.result.outputs, paths, strict=False)]
                plan.append({"role": "sidecar", "path": paths[-1], "n": n})
                self.store.set_file_outputs(record, plan, "outbox")
                return plan
        raise FileRejected("name_exhausted", f"{files.MAX_NUMBERED} outputs named like "
                           f"{name!r} exist already in the outbox; clear some out")

    def _place(self, record: FileRecord, output: dict[str, Any], dest: Path,
               ctx: BatchContext) -> tuple[int, int]:
        """Publish one output at ``dest`` from its staged file (or the original); the
        device and inode that got the name."""
        original = output["role"] == "original"
        if original:
            src_fd, synced = self.work.open_file(record), bool(output.get("synced"))
        else:
            src_fd, synced = self._open_staged(output, ctx.staged_in)
        # Link the very file opened and checked, not whatever the path names now.
        src = Path(f"/proc/self/fd/{src_fd}")
        try:
            st = os.fstat(src_fd)
            # On the outbox's filesystem, the file itself gets its final name: no copy.
            # Not an original that is to be archived: the two must not share an inode.
            if (not original or self.cfg.archive is None) and \
                    st.st_dev == ctx.folder_device(dest.parent, self.cfg.file_mode):
                if original:  # a staged output was checked when it was opened
                    digest, _ = files.hash_fd(src_fd, st.st_size)
                    self._check_hash(record, output, digest)
                try:
                    # A file of ours already of the mode is left unchanged. Another
                    # user's file is still refused here (EPERM), and copied instead.
                    changed = st.st_mode & 0o7777 != self.cfg.file_mode or \
                        st.st_uid != _EUID
                    if changed:
                        os.fchmod(src_fd, self.cfg.file_mode)
                    # Its content (and mode) reach the disk before its name does. One its
                    # provider synced and left unchanged is not synced again: each sync
                    # costs a flush of the disk's cache.
                    if changed or not synced:
                        os.fsync(src_fd)
                    crashpoints.reached("output-linking")
                    naming.publish(lambda: files.link_noreplace(src, dest, follow=True),
                                  dest)
                    return st.st_dev, st.st_ino
                except OSError as exc:
                    # Another user's file (not ours to chmod or to link), or a
                    # filesystem without hard links: copy it instead.
                    if exc.errno not in files.NO_LINK_ERRNOS:
                        raise
            with files.temp_file(dest.parent, 0o600, record.id, ctx.epoch) as (fd, tmp):
                digest, _ = files.copy_fd(src_fd, fd, st.st_size)
                self._check_hash(record, output, digest)
                os.fchmod(fd, self.cfg.file_mode)
                os.fsync(fd)
                crashpoints.reached("output-linking")
                st = os.fstat(fd)
                naming.publish(lambda: files.rename_noreplace(tmp, dest), dest)
                return st.st_dev, st.st_ino
        finally:
            os.close(src_fd)

    @staticmethod
    def _open_staged(output: dict[str, Any], staged_in: tuple[Path, ...]) -> tuple[int, bool]:
        """Open the staged file of ``output`` that holds the sha256 the store recorded
        for it: where it was recorded, else under its name in the batch's staging
        folders (fleet mode: this holder's, then earlier holders', newest first: the
        share may be mounted elsewhere on this node, or a late holder may have left a
        torn copy); and whether it is known synced (``synced`` was recorded for the file
        where it was recorded, not for a copy elsewhere with the same bytes, which a
        holder may have written and not yet synced). A recorded result is never signed
        again here: bytes found nowhere fail the file (``output_lost``, "staged result
        lost"), and bytes that differ everywhere fail it (``output_changed``); `folderseal
        retry` signs it again, by the operator's choice, because the lost result may
        have been published by a node that lost its lease meanwhile."""
        recorded = Path(output["staged"])
        places = [recorded, *(f / recorded.name for f in staged_in if f / recorded.name
                              != recorded)]
        differed = ""
        for place in places:
            try:
                fd = os.open(place, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                continue
            digest, _ = files.hash_fd(fd, output["bytes"])
            if digest == output["sha256"]:
                return fd, place == recorded and bool(output.get("synced"))
            os.close(fd)
            differed = differed or digest
        if differed:
            raise FileRejected(
                "output_changed",
                f"the {output['role']} output changed after it was produced (sha256 "
                f"{differed[:12]}… instead of {output['sha256'][:12]}…); it was not "
                "published: `folderseal retry` signs the file again")
        raise FileRejected(
            "output_lost", f"staged result lost: the {output['role']} output {recorded} is "
            "gone from the batch's staging folders; nothing was published: `folderseal "
            "retry` signs the file again")

    @staticmethod
    def _check_hash(record: FileRecord, output: dict[str, Any], digest: str) -> None:
        if digest != output["sha256"]:
            raise FileRejected(
                "output_changed",
                f"the {output['role']} output changed after it was produced (sha256 "
                f"{digest[:12]}… instead of {output['sha256'][:12]}…); it was not published")

    def _write(self, folder: Path, name: str, body: bytes, tag: str, epoch: int | None,
               ) -> None:
        naming.publish(lambda: files.write_new(folder, name, body, self.cfg.file_mode, tag,
                                               epoch), folder / name)

    def finish(self, records: list[FileRecord], keep_lease: Callable[[], None]) -> None:
        """Archive or delete the originals of published files (idempotent), the batch's
        lease confirmed before each (``keep_lease``)."""
        published = [r for r in records if r.state == FileState.PUBLISHED]
        if published:
            self._remove_originals(published, keep_lease)
        with self.store.transaction():
            for record in published:
                self.store.set_file_state(record.id, FileState.PUBLISHED, FileState.DONE,
                                          batch_id=record.batch_id)

    def _remove_originals(self, published: list[FileRecord],
                          keep_lease: Callable[[], None]) -> None:
        """Archive or delete the originals, through their batch folder's descriptor: that
        folder missing means the inbox share is away (its mount point is empty), not that
        the originals are gone, so nothing is marked done until it is back."""
        folder = self.work.batch_dir(published[0].batch_id or "")
        try:
            dir_fd = open_dir(folder)
        except FileNotFoundError:
            raise TransientError(f"the batch folder {folder} cannot be found (is the inbox "
                                 "share mounted?); its originals are removed later") from None
        except OSError as exc:
            raise translate(exc, folder) from None
        try:
            for record in published:
                keep_lease()  # a node whose lease expired removes nothing
                name = record.entry or ""
                if self.cfg.archive is None:
                    with contextlib.suppress(FileNotFoundError):  # removed before a crash
                        os.unlink(name, dir_fd=dir_fd)
                elif os.path.lexists(f"/proc/self/fd/{dir_fd}/{name}"):
                    self._archive(record, folder / name)
        except OSError as exc:
            raise translate(exc, self.cfg.archive or folder) from None
        finally:
            os.close(dir_fd)

    def _archive(self, record: FileRecord, original: Path) -> None:
        assert self.cfg.archive is not None
        require_root(self.cfg.archive, "archive")
        batch_id = record.batch_id
        # A taken name is given up for the next only after a fenced store write.
        files.move_numbered(original, self.cfg.archive / record.source,
                            files.folder_mode(self.cfg.file_mode),
                            taken=(lambda: self.store.renew_lease(batch_id)) if batch_id
                            else None)

