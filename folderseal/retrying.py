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

Back to the inbox, a file first goes to a hidden name in the folder of its place
(``.folderseal-retry-<file id>``, which the daemon never takes), and only then, by a
rename in that folder, to its name: so a file the daemon may have taken from the inbox
is never still in the errors folder as well. Back into its batch, a file is out of the
daemon's reach until step 3 reopens the batch.

Crash points (:mod:`folderseal.crashpoints`): ``retry:recorded`` (after 1),
``retry:staged`` (a file at its hidden name in the inbox), ``retry:moved`` (after each
file reached its place).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from folderseal import crashpoints, files
from folderseal.errors import FolderSealError, StoreError, TransientError
from folderseal.model import FileRecord, FileState, JobState
from folderseal.store import Store

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


def begin(store: Store, moves: list[Move]) -> None:
    """Step 1: record the intent of these moves (one file, or one batch's files)."""
    store.begin_retry([(m.record, m.plan()) for m in moves])
    crashpoints.reached("retry:recorded")


def carry_out(store: Store, moves: list[Move], resumed: bool = False) -> str:
    """Steps 2 and 3 for the moves of one file (inbox) or one batch; what became of
    them. ``resumed``: after an interruption, when some moves may be done already."""
    try:
        placed = [_move(m, resumed) for m in moves]
    except OSError as exc:
        _undo(store, moves, f"{exc.strerror or exc}: {exc.filename or moves[0].source}")
    for move in moves:
        move.record_file.unlink(missing_ok=True)
    try:
        return _finish(store, moves, placed[0])
    except (StoreError, TransientError) as exc:
        raise Refused(f"it was moved, but the store could not record that ({exc}); the next "
                      "folderseal retry, or the daemon's next rescan, finishes it") from None


def _finish(store: Store, moves: list[Move], placed: Path | None) -> str:
    """Step 3: tell the store, in one transaction."""
    first = moves[0]
    if first.to == "inbox":
        where = str(placed) if placed else f"{first.target} (or a -N name beside it)"
        store.set_file_state(first.record.id, FileState.RETRYING, FileState.RETRIED,
                             detail=where)
        return f"back in the inbox as {where}"
    job = store.job(first.record.batch_id or "")
    assert job is not None  # a file retried into its batch has one
    to_state = JobState.ACCEPTING if job.failed_step == JobState.ACCEPTING \
        else JobState.ACCEPTED
    store.finish_batch_retry(job.id, [m.record.id for m in moves], to_state)
    return f"back in remote batch {job.remote_id} (batch {job.id}), which is asked again"


def _move(move: Move, resumed: bool) -> Path | None:
    """Move one file to its place (if not there yet); where it went (None: unknown)."""
    there = os.path.lexists(move.source)
    if move.to == "batch":
        if not (resumed and os.path.lexists(move.target)):
            _put(move.source, move.target, move.record.id)
        elif there:  # a copy from another filesystem had landed; only the removal was left
            if files.hash_path(move.target)[0] != move.record.sha256:
                raise FileExistsError(errno.EEXIST, "another file is in its place",
                                      str(move.target))
            move.source.unlink()
        crashpoints.reached("retry:moved")
        return move.target
    if there:
        move.stage.unlink(missing_ok=True)  # an interrupted copy; the original is the truth
        _put(move.source, move.stage, move.record.id)
        crashpoints.reached("retry:staged")
    elif not os.path.lexists(move.stage):
        if not resumed:
            raise FileNotFoundError(errno.ENOENT, "it is no longer there", str(move.source))
        return None  # it reached its name before the interruption (and may be taken)
    placed = files.move_numbered(move.stage, move.target)
    crashpoints.reached("retry:moved")
    return placed


def _put(source: Path, target: Path, tag: str) -> None:
    files.makedirs(target.parent)
    files.remove_leftovers(target.parent, tag)
    files.move_noreplace(source, target, tag=tag)


def _undo(store: Store, moves: list[Move], why: str) -> NoReturn:
    """Move back what was moved, and fail the files again; raises Refused."""
    try:
        for move in moves:
            moved = move.stage if move.to == "inbox" else move.target
            if os.path.lexists(moved) and not os.path.lexists(move.source):
                files.move_noreplace(moved, move.source, tag=move.record.id)
    except OSError as exc:
        raise Refused(f"it could not be moved ({why}), nor moved back ({exc.strerror}: "
                      f"{exc.filename}): fix that, then run folderseal retry again, which "
                      "finishes the move (the daemon tries too, on every rescan)") from None
    store.undo_retry([m.record.id for m in moves], why)
    raise Refused(f"it could not be moved ({why}); what was moved is back where it was: "
                  "fix that, then retry it again")


def settle(store: Store, folder: str) -> list[tuple[FileRecord, str, bool]]:
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
            done, ok = carry_out(store, moves, resumed=True), True
        except (OSError, FolderSealError) as exc:
            done, ok = f"{exc}", False
        outcome += [(m.record, done, ok) for m in moves]
    return outcome
