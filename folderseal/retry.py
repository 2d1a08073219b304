"""``folderseal retry``: put failed files back, without ever sealing one twice.

What a retry does depends on how far the file got (PRODUCT.md's crash table):

* failed before its batch could have been accepted (at the claim, or a batch that
  failed before ``ACCEPTING``), or with the ``local`` provider (for which "signed
  once" means "published once"), or a document the remote provider reports as not
  signed: the original goes back from the errors folder into its inbox, at its
  relative path (``-N`` if taken), and is taken like a new drop;
* in a remote batch that failed at or after ``ACCEPTING`` (it may have been signed):
  the originals go back into the batch folder and the batch back to ``ACCEPTED``,
  so the same remote batch is asked again (status, download); nothing is submitted
  again;
* any other failure after a remote provider may have signed it is refused, with
  the reason: check with the provider, then drop the file again by hand.

Only the very file that failed is moved: its (device, inode) and sha256 must be what
the store recorded when it went into the errors folder. One that is gone (now marked
``CLEARED``), replaced, or changed is refused with the reason.

Ids are file ids (``retry_id`` in the error record) or batch ids (all failed files of
the batch), as ``status`` shows, or paths in an errors folder (the original or its
``.error.json``). A batch that is not failed but waits for its next attempt is made
due now: the daemon takes it up within a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from folderseal import files
from folderseal.config import Settings
from folderseal.errors import ExitCode, FolderSealError
from folderseal.failures import ERROR_SUFFIX, Found, find_original, identity
from folderseal.model import FileRecord, FileState, JobRecord, JobState
from folderseal.store import Store
from folderseal.workdir import WorkFolder

# States from which a batch may have been accepted, and so signed.
MAY_BE_SIGNED = frozenset({JobState.ACCEPTING, JobState.ACCEPTED, JobState.CLOSED,
                           JobState.DOWNLOADED, JobState.DELIVERED, JobState.CLEANED})
NOT_SIGNED_CODES = frozenset({"not_signed"})  # the provider itself says so
IN_ERRORS = (FileState.FAILED, FileState.CLEARED)


class Refused(FolderSealError):
    """This failed file cannot be retried automatically."""


def _in_errors(settings: Settings, store: Store, record: FileRecord) -> Found:
    """The very file that failed, in the errors folder (or why not); one that is gone
    from there is marked CLEARED, as the daemon's next rescan would."""
    found = find_original(settings.folders[record.folder].errors, record, hashed=True)
    if found.gone:
        store.set_file_state(record.id, FileState.FAILED, FileState.CLEARED,
                             detail=found.problem)
    return found


def _remove_record(original: Path) -> None:
    (original.parent / (original.name + ERROR_SUFFIX)).unlink(missing_ok=True)


def _way(settings: Settings, record: FileRecord, job: JobRecord | None) -> str:
    """"inbox", "batch" or "refuse": how this failed file may be retried."""
    if job is None:
        return "inbox"
    if job.provider not in settings.providers:
        return "refuse"  # how far it got cannot be judged without its provider
    if settings.providers[job.provider].kind == "local":
        return "inbox"
    if job.state == JobState.FAILED:
        return "batch" if job.failed_step in MAY_BE_SIGNED else "inbox"
    return "inbox" if record.error_code in NOT_SIGNED_CODES else "refuse"


def _to_inbox(settings: Settings, store: Store, record: FileRecord) -> str:
    original = (found := _in_errors(settings, store, record)).path
    if original is None:
        raise Refused(found.problem)
    with store.transaction():  # a daemon's rescan waits, then finds it RETRIED, not gone
        target = files.move_numbered(original,
                                     settings.folders[record.folder].inbox / record.source)
        _remove_record(original)
        store.set_file_state(record.id, FileState.FAILED, FileState.RETRIED, detail=str(target))
    return f"back in the inbox as {target}"


def _to_batch(settings: Settings, store: Store, job: JobRecord) -> list[FileRecord]:
    """Put a remote batch's originals back and ask the same remote batch again.

    All failed files of the batch go back together, or none: each original is checked
    (the very file, unchanged) before any is moved, and they are moved within the one
    transaction that tells the store (a daemon's rescan never sees them leave errors
    unexplained). A batch that failed at ACCEPTING goes back there (its status decides
    whether accept is sent); one that failed later goes back to ACCEPTED (poll, download).
    """
    records = [r for r in store.files_of_job(job.id) if r.state in IN_ERRORS]
    originals = []
    for record in records:
        found = _in_errors(settings, store, record) if record.state == FileState.FAILED \
            else Found(None, "it is gone from the errors folder")
        if found.path is None:
            raise Refused(f"{record.id} {record.source_text}: {found.problem}; the batch is "
                          "asked again only with all its failed files")
        if record.entry is None or found.sha256 != record.sha256:
            raise Refused(f"the original of {record.id} in the errors folder is not what was "
                          "submitted; the batch cannot be asked again (drop the files again "
                          "by hand)")
        originals.append(found.path)
    folder = WorkFolder(settings.folders[job.folder].work_folder, job.folder).batch_dir(job.id)
    files.makedirs(folder)
    moved: list[tuple[Path, Path]] = []
    to_state = JobState.ACCEPTING if job.failed_step == JobState.ACCEPTING \
        else JobState.ACCEPTED
    with store.transaction():
        try:
            for record, original in zip(records, originals, strict=True):
                target = folder / (record.entry or "")
                files.move_noreplace(original, target)
                moved.append((target, original))
            for record in records:
                store.reopen_file(record.id)
            store.reopen_job(job.id, to_state)
        except BaseException:
            for target, original in moved:  # all or nothing
                files.move_noreplace(target, original)
            raise
    for original in originals:
        _remove_record(original)
    return records


def _id_of_path(settings: Settings, store: Store, given: str) -> str | None:
    """The file id of a path in an errors folder (the original or its record)."""
    path = Path(os.path.abspath(given))
    path = Path(os.path.realpath(path.parent)) / path.name.removesuffix(ERROR_SUFFIX)
    for name, cfg in settings.folders.items():
        root = Path(os.path.realpath(cfg.errors))
        if root not in path.parents:
            continue
        relative = str(path.relative_to(root))
        there = identity(path, hashed=False)
        candidates = [r for state in IN_ERRORS for r in store.files_in_state(name, state)
                      if any(o.get("role") == "error" and o.get("path") == relative
                             for o in r.outputs)]
        if candidates:  # the one whose file is there, else the latest that failed there
            return max(candidates, key=lambda r: (
                any((o.get("dev"), o.get("ino")) == (there.get("dev"), there.get("ino"))
                    for o in r.outputs if "ino" in o),
                r.state == FileState.FAILED, r.claimed_at)).id
    return None


def _not_failed(store: Store, given: str) -> bool:
    """Say what an id without a failed file is, and wake its batch if it waits; False
    when that is a failure to retry."""
    record = store.file(given)
    if record is not None and record.state == FileState.CLEARED:
        print(f"{given} {record.source_text}: not retried: it is gone from the errors folder "
              "(removed, moved away or replaced by hand); to seal it, drop it into the inbox",
              file=sys.stderr)
        return False
    if record is not None and record.state in (FileState.DONE, FileState.RETRIED):
        done = "it was delivered" if record.state == FileState.DONE \
            else "an earlier retry put it back into the inbox"
        print(f"{given} {record.source_text}: nothing to retry: {done}")
        return True
    batch_id = given if record is None else record.batch_id
    job = store.job(batch_id) if batch_id else None
    if job is None:
        if record is None:
            print(f"{given}: no failed file or batch with this id, and no file of an errors "
                  "folder at this path", file=sys.stderr)
            return False
        print(f"{given} {record.source_text}: nothing to retry: it waits to be batched")
        return True
    what = f"batch {job.id}" if record is None else \
        f"{given} {record.source_text} (batch {job.id})"
    due = job.next_attempt_at
    if store.wake_job(job.id):
        after = f" after {job.attempts} failed attempt(s) ({job.error_message})" \
            if job.attempts else ""
        print(f"{what}: was waiting in {job.state}{after}, its next step due in "
              f"{(due or 0) - time.time():.0f} s; woken: the daemon takes it up within a second")
    elif job.state == JobState.FAILED:
        print(f"{what}: nothing to retry: none of its failed files is in the errors folder")
    elif due is None:
        print(f"{what}: nothing to retry: it is {job.state}, finished")
    else:
        print(f"{what}: nothing to retry: it is {job.state}, and being worked on now")
    return True


def retry(settings: Settings, ids: list[str] | None) -> int:
    store = Store.open(settings.state_dir, settings.node_name)
    try:
        failed = store.failed_files()
        code = ExitCode.OK
        if ids is not None:
            wanted = set()
            for given in ids:
                known = store.file(given) is not None or store.job(given) is not None
                wanted.add(given if known else _id_of_path(settings, store, given) or given)
            failed = [r for r in failed if r.id in wanted or r.batch_id in wanted]
            for other in sorted(wanted - {r.id for r in failed} - {r.batch_id for r in failed}):
                if not _not_failed(store, other):
                    code = ExitCode.FAILURE
        jobs = {r.batch_id: store.job(r.batch_id) for r in failed if r.batch_id}
        by_batch: dict[str, list[FileRecord]] = {}
        for record in failed:
            job = jobs.get(record.batch_id or "")
            way = _way(settings, record, job)
            try:
                if way == "batch" and job is not None:
                    by_batch.setdefault(job.id, []).append(record)
                    continue
                if way == "refuse":
                    raise Refused("it may have been signed by the provider "
                                  f"({record.error_code}), or its provider is no longer "
                                  "configured; check with the provider, then drop it into "
                                  "the inbox again by hand")
                print(f"{record.id} {record.source_text}: "
                      f"{_to_inbox(settings, store, record)}")
            except (OSError, FolderSealError) as exc:
                print(f"{record.id} {record.source_text}: not retried: {exc}", file=sys.stderr)
                code = ExitCode.FAILURE
        for job_id in by_batch:
            job = jobs[job_id]
            assert job is not None
            try:
                for record in _to_batch(settings, store, job):
                    print(f"{record.id} {record.source_text}: back in remote batch "
                          f"{job.remote_id} (batch {job.id}), which is asked again")
            except (OSError, FolderSealError) as exc:
                print(f"batch {job_id}: not retried: {exc}", file=sys.stderr)
                code = ExitCode.FAILURE
        if not failed and ids is None:
            print("nothing to retry")
        return code
    finally:
        store.close()
