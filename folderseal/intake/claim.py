"""Claiming: taking a file out of the inbox by one rename, and recording it.

A claim is one ``rename()`` into ``work/incoming/<claim id>/<relative path>``: atomic
(the work folder is on the inbox's filesystem), won by one process only, and it moves
a symlink itself rather than what the link points to. The renames of one step are
made durable together (each folder synced once), and only then recorded in the store,
in one transaction; a crash in between leaves claims the store does not know, which
every scan of ``incoming/`` registers (they were never sent anywhere).

A file of ``HASH_APART_BYTES`` or more is recorded without its hash when the folder has a
hasher thread (:mod:`folderseal.intake.hashing`): hashing 2 GiB takes seconds, and the
small files claimed after it must not wait for them. Such a claim is batched once the
hasher recorded its hash, as one a crash left unhashed is once :meth:`Claims.sweep` did.

A claimed file that cannot be sealed (not a regular file, empty, unreadable, vanished,
stuck, a duplicate) is recorded ``REJECTED`` with the reason, and handed on through the
``reject`` callback the claims were given: putting it into the errors folder is not
the claim's business (the daemon has the folder's errors thread do it, off the
intake's thread).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from folderseal.core import crashpoints, files, metrics
from folderseal.core.errors import ConfigError, StateConflict
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileRecord, FileState
from folderseal.intake.fragments import Fragments
from folderseal.intake.settle import SettleTracker
from folderseal.store import Store, new_id
from folderseal.work import CLAIMS_TAKEN_OVER, WorkFolder

# A rename refused because a program holds the file (SMB, Windows clients): try later.
IN_USE = frozenset({errno.EBUSY, errno.EACCES, errno.EPERM, errno.ETXTBSY})
OUTAGE = frozenset({errno.ENOENT, errno.ESTALE, errno.ENOTCONN, errno.EHOSTDOWN, errno.EIO,
                    errno.ETIMEDOUT, errno.ENODEV, errno.EHOSTUNREACH})
# A claim that fails at once: (code, message).
Failure = tuple[str, str]
# Told of each rejected claim (its id and why), after the store recorded it REJECTED.
Reject = Callable[[str, Failure], None]
NOT_REGULAR: Failure = (
    "not_regular", "it is not a regular file (a symbolic link, folder link, FIFO or device); "
    "folderseal seals regular files only and never follows links")
# Claimed only after it stayed empty for ten settle periods (settle.EMPTY_SETTLE_FACTOR).
EMPTY: Failure = (
    "empty", "the file is empty (0 bytes) and stayed empty well past settle_seconds, so "
    "there is nothing to seal: the program that wrote it (a scanner, a copy job) stopped "
    "before writing any content. Scan or copy it into the inbox again; this empty file can "
    "be deleted")


HASH_APART_BYTES = 8 << 20  # hashed on the folder's hasher thread, when it has one


class Outage(Exception):
    """The inbox is out of reach right now."""


class HashApart(Protocol):
    """Takes a claim whose hash is still to be recorded (intake.hashing.Hasher)."""

    def add(self, record: FileRecord) -> None: ...


class Claims:
    """Claims files of one inbox into its work folder and records them."""

    def __init__(self, name: str, inbox: Path, work: WorkFolder, store: Store,
                 tracker: SettleTracker, fragments: Fragments, reject: Reject) -> None:
        self.name = name
        self.inbox = inbox
        self.work = work
        self.store = store
        self.tracker = tracker
        self.fragments = fragments  # told of each claim: a file at its path may continue it
        self.reject = reject
        self.hash_apart: HashApart | None = None  # set while the folder's hasher runs
        self.log = get_logger(folder=name)

    def register_unknown(self, now: float) -> int:
        """Register claims the store does not know (a crash or a refused write); how many."""
        recovered = 0
        present = self.work.claim_ids()
        known = self.store.known_ids(present) if present else set()
        for claim_id in present:
            if claim_id in known:
                continue
            top = self.work.claim_dir(claim_id)
            found = [str(p.relative_to(top)) for p in top.rglob("*")
                     if p.is_symlink() or not p.is_dir()]
            if not found:
                shutil.rmtree(top, ignore_errors=True)  # a claim that never got its file
                continue
            if len(found) > 1:  # a claim holds one file; something else wrote here
                self.log.warning("file.claim_crowded", file=claim_id, found=found[:5])
            self.log.info("file.claim_recovered", file=claim_id, source=found[0])
            self.register([(claim_id, found[0], now, None)])
            recovered += 1
        return recovered

    def rename_in(self, source: str) -> str | None:
        """Claim by rename; the claim id, or None if the file is busy or gone."""
        claim_id = new_id()
        head, _, name = source.rpartition("/")
        target = self.work.new_claim_dir(claim_id)
        if head:
            target = target / head
            target.mkdir(parents=True)
        crashpoints.reached("claim-folder-made")
        try:
            os.rename(self.inbox / source, target / name)
        except OSError as exc:
            # Only empty folders, and none kept as a spare: a rename a share retried may
            # move the file in after all, and then the next scan of the claims finds it.
            with contextlib.suppress(OSError):
                self.work.remove_empty_claim_dirs(self.work.claim_dir(claim_id), target,
                                                  spare=False)
            if exc.errno == errno.EXDEV:
                raise ConfigError(f"the work folder {self.work.path} is on another filesystem "
                                  f"than the inbox {self.inbox}") from None
            if exc.errno == errno.ENOENT:
                self.tracker.forget(source)
            elif exc.errno in IN_USE:
                self.tracker.wait(source, f"in use by another program ({exc.strerror})",
                                  self.store.clock())
            elif exc.errno in OUTAGE:
                raise Outage(f"cannot claim {source}: {exc.strerror}") from None
            else:
                raise
            return None
        return claim_id

    def claim_all(self, wanted: list[tuple[str, Failure | None]]) -> list[str | None]:
        """Claim files by rename, make the renames durable, then record them in the store.

        Folders are synced once per call, however many files moved; a crash before the
        store knows a claim leaves it in incoming/, where the next scan finds it.
        """
        claimed: list[tuple[str, str, float, Failure | None]] = []
        ids: list[str | None] = []
        folders = {self.work.incoming}
        for source, fail in wanted:
            seen_at = self.tracker.first_seen(source)
            if seen_at is None:
                seen_at = self.store.clock()
            claim_id = self.rename_in(source)
            ids.append(claim_id)
            if claim_id is None:
                continue
            self.tracker.forget(source)
            claimed.append((claim_id, source, seen_at, fail))
            folder = self.work.claim_dir(claim_id)
            folders.add(folder)
            for part in source.split("/")[:-1]:
                folder = folder / part
                folders.add(folder)
            folders.add((self.inbox / source).parent)
        for folder in sorted(folders, key=lambda p: -len(p.parts)):  # deepest first
            try:
                files.fsync_dir(folder)
            except FileNotFoundError:
                # A claim folder another node took over while this one was frozen: its
                # file is that node's now, and register() logs claims.lost for it.
                if not folder.is_relative_to(self.work.incoming) or folder == self.work.incoming:
                    raise
        if claimed:
            crashpoints.reached("claimed")
            self.register(claimed)
            now = self.store.clock()
            for claim_id, source, _, _ in claimed:
                self.fragments.claimed(source, claim_id, now)
            metrics.FILES_CLAIMED.labels(self.name).inc(len(claimed))
        return ids

    def register(self, claimed: list[tuple[str, str, float, Failure | None]]) -> None:
        """Record claimed files with their hashes in one transaction; fail the bad ones."""
        rows = []
        failures = []
        apart = []
        hasher = self.hash_apart  # read once: the hasher thread drops it as it stops
        for claim_id, source, seen_at, fail in claimed:
            path = self.work.claim_path(claim_id, source)
            try:
                st = os.lstat(path)
                if fail is None and hasher is not None and stat.S_ISREG(st.st_mode) \
                        and st.st_size >= HASH_APART_BYTES:
                    digest, problem = None, None
                    apart.append(claim_id)
                else:
                    digest, problem = (None, fail) if fail else self._check(path, st)
            except FileNotFoundError:
                self._lost(claim_id, "its file left this node's claims folder")
                continue
            rows.append({"id": claim_id, "folder": self.name, "source": source,
                         "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                         "mtime_ns": st.st_mtime_ns, "sha256": digest, "seen_at": seen_at})
            if problem is not None:
                failures.append((claim_id, problem))
        taken = set(self.store.add_claims(rows))
        for row in rows:
            if row["id"] in taken:
                self._lost(row["id"], "another node recorded it first")
            else:
                self.log.info("file.claimed", file=row["id"], source=row["source"],
                              bytes=row["size"])
        for claim_id, failure in failures:
            if claim_id not in taken:
                self.fail(claim_id, failure)
        for claim_id in apart:
            record = self.store.file(claim_id) if claim_id not in taken else None
            if record is not None and hasher is not None:
                hasher.add(record)

    def _lost(self, claim_id: str, how: str) -> None:
        """A claim of this node that another node took over (it thought this one dead,
        after a pause longer than lease_seconds): that node finishes it."""
        self.log.warning("claims.lost", file=claim_id, reason=f"{how}: {CLAIMS_TAKEN_OVER}")

    @classmethod
    def _look(cls, path: Path) -> tuple[os.stat_result, str | None, Failure | None]:
        """:meth:`_check` of the file at ``path``, with its lstat."""
        st = os.lstat(path)
        return (st, *cls._check(path, st))

    @staticmethod
    def _check(path: Path, st: os.stat_result) -> tuple[str | None, Failure | None]:
        """Hash a claimed file (``st``: its lstat): its hash, or why it cannot be sealed.

        Neither (no hash, no failure) means reading failed for a passing reason (EIO on
        a share); the file stays claimed and the next sweep tries again.
        """
        if not stat.S_ISREG(st.st_mode):
            return None, NOT_REGULAR
        if st.st_size == 0:
            return None, EMPTY
        try:
            digest, _ = files.hash_path(path)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                return None, ("unreadable", f"cannot read the file: {exc.strerror}")
            return None, None
        return digest, None

    def fail(self, claim_id: str, failure: Failure, store: Store | None = None) -> None:
        """A claimed file that cannot be sealed: REJECTED, then handed to ``reject``.
        Whatever that does, it must not write the errors folder on this thread (the
        folder's intake): a share there that hangs must not stop claims."""
        code, message = failure
        try:
            (store or self.store).reject_claim(claim_id, code, message)
        except StateConflict:
            self._lost(claim_id, "it is no longer this node's claim")
            return
        self.reject(claim_id, failure)

    def sweep(self) -> None:
        """Finish claims recorded without their hash (big files, or a crash mid-claim):
        here, or on the hasher thread when the folder has one; the rejected ones are the
        errors thread's."""
        for record in self.store.unfinished_claims(self.name):
            if record.state == FileState.REJECTED:
                continue
            hasher = self.hash_apart  # read once: the hasher thread drops it as it stops
            if hasher is not None:
                hasher.add(record)
            else:
                self.finish(record, self.store)

    def finish(self, record: FileRecord, store: Store) -> bool:
        """Hash a claim recorded without its hash and record it, on ``store`` (this
        thread's); or fail it, if it cannot be sealed. True if its hash was recorded."""
        try:
            st, digest, problem = self._look(self.work.path_of(record))
        except FileNotFoundError:
            # Look again before concluding it is gone: a node taking a dead node's
            # claims over moves them between two places this looks at in turn.
            path = self.work.path_of(record)
            try:
                st, digest, problem = self._look(path)
            except FileNotFoundError:
                # Gone, or the share holding the work folder is away (its mount point
                # empty): only a work folder that is there and ours says "vanished".
                if not self.work.attached(store.store_id):
                    raise OSError(errno.ESTALE, "the work folder cannot be read (its "
                                  "share is away?)", str(self.work.path)) from None
                problem, digest = ("vanished", "the claimed file is no longer in the "
                                   f"work folder ({path})"), None
        if problem is not None:
            self.fail(record.id, problem, store)
        elif digest is not None:
            try:
                store.set_claim_hash(record.id, digest, st.st_size, st.st_mtime_ns)
                return True
            except StateConflict:
                self._lost(record.id, "it is no longer this node's claim")
        return False
