"""The moves of ``folderseal retry``, safe against a crash at any point.

A retry moves files the store must account for at every moment, and a move may be slow
(a copy from another filesystem), so the moves happen between two short store
transactions, never inside one (the daemon's writes would wait for them):

1. the intent: each file becomes ``RETRYING``, and its outputs say where it goes
   (role ``retry``: ``to`` inbox or batch, ``from``, ``path``, ``record``);
2. the moves, outside any transaction; each moves only what is still where it was,
   so it can run again after a crash;
3. the end: the error records are removed, and one transaction makes the files
   ``RETRIED`` (inbox), or ``BATCHED`` again with their batch reopened (batch).

A move that fails is undone, and the files are ``FAILED`` again. A crash, or a commit
that fails, leaves files ``RETRYING``: the next ``folderseal retry`` and the daemon's
reconcile of the errors folder (soon after it starts, then on every rescan) run 2 and 3
again for them (:func:`settle`), holding ``retry.lock`` in the state folder, which a
retry holds while it works.

Nothing moves unless both ends are there: the inbox (its work folder holds this store's
marker) and the errors folder the failures went to (its marker names it). A share not
mounted shows an empty folder at its mount point; a file moved there would land on the
local disk, hidden once the share is back. So a retry is refused then, an interrupted
one stays ``RETRYING`` until the shares are back, and the inbox and the work folder are
never created by a retry. With the errors folder known to be the one, a file found
neither there nor at its hidden name had reached its name before the interruption.

A copy from another filesystem that got its name while its original is still in place
(a crash, or a removal that failed) is recognised by its content: taken as the move's
result, or removed when the move is undone; so no file is ever left in two places.

Back to the inbox, a file first goes to a hidden name in the folder of its place
(``.folderseal-retry-<file id>``, which the daemon never takes), and only then, by a
rename in that folder, to its name: so a file the daemon may have taken from the inbox
is never still in the errors folder as well. Back into its batch, a file is out of the
daemon's reach until step 3 reopens the batch.

Crash points (:mod:`folderseal.core.crashpoints`): ``retry:recorded`` (after 1),
``retry:staged`` (a file at its hidden name in the inbox), ``retry:moved`` (after each
file reached its place).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from folderseal.core import crashpoints, files
from folderseal.core.config import FolderConfig
from folderseal.core.errors import FolderSealError, StoreError, TransientError
from folderseal.core.model import BatchState, FileRecord, FileState
from folderseal.publish import errorfiles
from folderseal.store import Store
from folderseal.work import WorkFolder

LOCK = "retry.lock"
STAGE_PREFIX = ".folderseal-retry-"


class Refused(FolderSealError):
    """This failed file is not retried (now, or automatically); the message says why and
    what to do."""


@contextmanager
def lock(state_dir: Path, wait: float) -> Iterator[bool]:
    """Hold the retry lock (True), or not (False) if another process held it ``wait`` s.
    The kernel drops it when the holder dies, even by SIGKILL."""
    fd = os.open(state_dir / LOCK, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        yield True
    finally:
        os.close(fd)


def in_progress(state_dir: Path) -> bool:
    """True while a retry (or the daemon finishing an interrupted one) holds the retry
    lock: files ``RETRYING`` then are being moved, not left by an interruption. Never
    waits; False when it cannot tell (no retry ever ran here, or the lock is not readable)."""
    try:
        fd = os.open(state_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # dropped again by the close
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True, slots=True)
class Move:
    """Where one retried file goes."""

    record: FileRecord
    to: str             # "inbox" | "batch"
    source: Path        # the original: in the errors folder (or the work folder)
    target: Path        # its place in the inbox (-N if taken) or its batch folder
    record_file: Path   # its .error.json

    @property
    def stage(self) -> Path:
        return self.target.parent / f"{STAGE_PREFIX}{self.record.id}"

    @property
    def place(self) -> dict[str, Any]:
        """Where the failure recorded its original (the errors folder, or ``kept``)."""
        return errorfiles.place_of(self.record) or {}

    @property
    def kept_in_place(self) -> bool:
        """An original that stayed in the work folder under its batch entry: at its place."""
        return self.to == "batch" and self.source == self.target

    def is_copy(self, path: Path) -> bool:
        """Whether ``path`` holds the original's content (a copy that got its name)."""
        expected = self.place.get("sha256") or self.record.sha256
        return expected is not None and stat.S_ISREG(os.lstat(path).st_mode) \
            and files.hash_path(path)[0] == expected

    def plan(self) -> dict[str, Any]:
        return {"role": "retry", "to": self.to, "from": str(self.source),
                "path": str(self.target), "record": str(self.record_file)}

    @classmethod
    def planned(cls, record: FileRecord) -> Move | None:
        plan = next((o for o in record.outputs if o.get("role") == "retry"), None)
        if plan is None:
            return None
        return cls(record, plan["to"], Path(plan["from"]), Path(plan["path"]),
                   Path(plan["record"]))


def begin(store: Store, cfg: FolderConfig, moves: list[Move]) -> None:
    """Step 1: record the intent of these moves (one file, or one batch's files); Refused,
    with nothing recorded, while the inbox or the errors folder is not there."""
    _require_places(store, cfg, moves)
    store.begin_retry([(m.record, m.plan()) for m in moves])
    crashpoints.reached("retry:recorded")


def carry_out(store: Store, cfg: FolderConfig, moves: list[Move], resumed: bool = False) -> str:
    """Steps 2 and 3 for the moves of one file (inbox) or one batch; what became of
    them. ``resumed``: after an interruption, when some moves may be done already."""
    _require_places(store, cfg, moves)  # else they stay RETRYING until the shares are back
    work = WorkFolder(cfg.work_folder, moves[0].record.folder, store.node)
    try:
        placed = [_move(m, cfg.inbox, work.batches, resumed) for m in moves]
    except OSError as exc:
        _undo(store, moves, f"{exc.strerror or exc}: {exc.filename or moves[0].source}")
    for move in moves:
        move.record_file.unlink(missing_ok=True)
    try:
        return _finish(store, moves, placed[0])
    except (StoreError, TransientError) as exc:
        raise Refused(f"it was moved, but the store could not record that ({exc}); the next "
                      "folderseal retry, or the daemon's next rescan, finishes it") from None


def _require_places(store: Store, cfg: FolderConfig, moves: list[Move]) -> None:
    """Refuse unless both ends of the moves are there: the inbox, whose work folder holds
    this store's marker (no empty mount point), and the errors folder the failures went
    to, whose marker names it (a failure recorded before folders had ids is let through)."""
    again = ("then run folderseal retry again (a running daemon finishes an interrupted "
             "retry by itself at its next rescan)")
    work = WorkFolder(cfg.work_folder, moves[0].record.folder, store.node)
    if not (cfg.inbox.is_dir() and work.attached(store.store_id)):
        raise Refused(f"the inbox {cfg.inbox} is not there, or not the one its files came "
                      f"from ({work.marker} is missing or not this store's: its share not "
                      f"mounted?): mount it, {again}")
    went = {str(m.place["folder_id"]) for m in moves
            if m.place.get("folder_id") and not m.place.get("kept")}
    if not went:
        return
    try:
        ids = errorfiles.folder_ids(cfg.errors)
    except OSError as exc:
        raise Refused(f"the errors folder {cfg.errors} cannot be read ({exc.strerror}): mount "
                      f"its share, or fix its permissions, {again}") from None
    if not went <= set(ids):
        problem, advice = errorfiles.unseen(cfg.errors, ids, missing=sorted(went - set(ids)))
        raise Refused(f"{problem}: {advice}; {again}")


def _finish(store: Store, moves: list[Move], placed: Path | None) -> str:
    """Step 3: tell the store, in one transaction."""
    first = moves[0]
    if first.to == "inbox":
        where = str(placed) if placed else f"{first.target} (or a -N name beside it)"
        store.set_file_state(first.record.id, FileState.RETRYING, FileState.RETRIED,
                             detail=where)
        return f"back in the inbox as {where}"
    batch = store.batch(first.record.batch_id or "")
    if batch is None:
        raise Refused(f"its batch {first.record.batch_id} is not in the store (was the store "
                      "replaced?): run folderseal recover, which settles the work folder")
    to_state = BatchState.ACCEPTING if batch.failed_step == BatchState.ACCEPTING \
        else BatchState.ACCEPTED
    store.finish_batch_retry(batch, [m.record.id for m in moves], to_state)
    return f"back in remote batch {batch.remote_id} (batch {batch.id}), which is asked again"


def _move(move: Move, inbox: Path, batches: Path, resumed: bool) -> Path | None:
    """Move one file to its place (if not there yet); where it went (None: unknown)."""
    there = os.path.lexists(move.source)
    if move.to == "batch":
        if not os.path.lexists(move.target):
            _put(move.source, move.target, move.record.id, batches)
        elif there and not move.kept_in_place:  # a copy got its name; its original stayed
            if not move.is_copy(move.target):
                raise FileExistsError(errno.EEXIST, "another file is in its place",
                                      str(move.target))
            files.fsync_dir(move.target.parent)
            move.source.unlink()
        crashpoints.reached("retry:moved")
        return move.target
    if there:
        move.stage.unlink(missing_ok=True)  # an interrupted copy; the original is the truth
        _put(move.source, move.stage, move.record.id, inbox)
        crashpoints.reached("retry:staged")
    elif not os.path.lexists(move.stage):
        if not resumed:
            raise FileNotFoundError(errno.ENOENT, "it is no longer there", str(move.source))
        # Not in the errors folder it went to (_require_places), nor at its hidden name:
        # it reached its name before the interruption (and may be taken already).
        return None
    placed = files.move_numbered(move.stage, move.target)
    crashpoints.reached("retry:moved")
    return placed


def _put(source: Path, target: Path, tag: str, root: Path) -> None:
    """Move ``source`` to ``target``, making the folders between ``root`` (never made: a
    share's root) and it."""
    files.makedirs(target.parent, within=root)
    files.remove_leftovers(target.parent, tag)
    files.move_noreplace(source, target, tag=tag)


def _undo(store: Store, moves: list[Move], why: str) -> NoReturn:
    """Move back what was moved (a copy whose original stayed is removed), and fail the
    files again; raises Refused."""
    try:
        for move in moves:
            moved = move.stage if move.to == "inbox" else move.target
            if move.kept_in_place or not os.path.lexists(moved):
                continue
            if not os.path.lexists(move.source):
                files.move_noreplace(moved, move.source, tag=move.record.id)
            elif move.is_copy(moved):
                moved.unlink()
    except OSError as exc:
        raise Refused(f"it could not be moved ({why}), nor moved back ({exc.strerror}: "
                      f"{exc.filename}): fix that, then run folderseal retry again, which "
                      "finishes the move (the daemon tries too, on every rescan)") from None
    store.undo_retry([m.record.id for m in moves], why)
    raise Refused(f"it could not be moved ({why}); what was moved is back where it was: "
                  "fix that, then retry it again")


def settle(store: Store, folder: str, cfg: FolderConfig) -> list[tuple[FileRecord, str, bool]]:
    """Finish (or undo) the retries of ``folder`` a crash or a failed commit left: each
    file, what became of it, and whether that went well. Hold the lock to call it."""
    groups: dict[str, list[Move]] = {}
    for record in store.files_in_state(folder, FileState.RETRYING):
        move = Move.planned(record)
        if move is not None:
            key = record.batch_id if move.to == "batch" else record.id
            groups.setdefault(key or record.id, []).append(move)
    outcome = []
    for moves in groups.values():
        try:
            done, ok = carry_out(store, cfg, moves, resumed=True), True
        except (OSError, FolderSealError) as exc:
            done, ok = f"{exc}", False
        outcome += [(m.record, done, ok) for m in moves]
    return outcome
