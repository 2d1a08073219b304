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

Ids are file ids or batch ids (all failed files of the batch), as ``status`` shows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from folderseal import files
from folderseal.config import Settings
from folderseal.errors import ExitCode, FolderSealError
from folderseal.model import FileRecord, FileState, JobRecord, JobState
from folderseal.store import Store
from folderseal.workdir import WorkFolder

# States from which a batch may have been accepted, and so signed.
MAY_BE_SIGNED = frozenset({JobState.ACCEPTING, JobState.ACCEPTED, JobState.CLOSED,
                           JobState.DOWNLOADED, JobState.DELIVERED, JobState.CLEANED})
NOT_SIGNED_CODES = frozenset({"not_signed"})  # the provider itself says so


class Refused(FolderSealError):
    """This failed file cannot be retried automatically."""


def _original_in_errors(settings: Settings, record: FileRecord) -> Path:
    errors = settings.folders[record.folder].errors
    for output in record.outputs:
        if output.get("role") == "error":
            original = errors / str(output["path"])
            if os.path.lexists(original):
                return original
    raise Refused(f"the original of {record.id} is not in the errors folder any more "
                  "(moved or removed by hand)")


def _remove_record(original: Path) -> None:
    (original.parent / (original.name + ".error.json")).unlink(missing_ok=True)


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
    original = _original_in_errors(settings, record)
    target = files.move_numbered(original, settings.folders[record.folder].inbox / record.source)
    _remove_record(original)
    store.set_file_state(record.id, FileState.FAILED, FileState.RETRIED, detail=str(target))
    return f"back in the inbox as {target}"


def _to_batch(settings: Settings, store: Store, job: JobRecord) -> list[FileRecord]:
    """Put a remote batch's originals back and ask the same remote batch again.

    All failed files of the batch go back together, or none: each original is checked
    (still in errors, unchanged) before any is moved, and the store learns of it in one
    transaction. A batch that failed at ACCEPTING goes back there (its status decides
    whether accept is sent); one that failed later goes back to ACCEPTED (poll, download).
    """
    records = [r for r in store.files_of_job(job.id) if r.state == FileState.FAILED]
    originals = []
    for record in records:
        original = _original_in_errors(settings, record)
        if record.entry is None or files.hash_path(original)[0] != record.sha256:
            raise Refused(f"the original of {record.id} in the errors folder was changed; "
                          "the batch cannot be asked again (drop the files again by hand)")
        originals.append(original)
    folder = WorkFolder(settings.folders[job.folder].work_folder, job.folder).batch_dir(job.id)
    files.makedirs(folder)
    moved: list[tuple[Path, Path]] = []
    try:
        for record, original in zip(records, originals, strict=True):
            target = folder / (record.entry or "")
            files.move_noreplace(original, target)
            moved.append((target, original))
    except OSError:
        for target, original in moved:  # all or nothing
            files.move_noreplace(target, original)
        raise
    to_state = JobState.ACCEPTING if job.failed_step == JobState.ACCEPTING \
        else JobState.ACCEPTED
    with store.transaction():
        for record in records:
            store.reopen_file(record.id)
        store.reopen_job(job.id, to_state)
    for original in originals:
        _remove_record(original)
    return records


def retry(settings: Settings, ids: list[str] | None) -> int:
    store = Store.open(settings.state_dir, settings.node_name)
    try:
        failed = store.failed_files()
        code = ExitCode.OK
        if ids is not None:
            wanted = set(ids)
            failed = [r for r in failed if r.id in wanted or r.batch_id in wanted]
            for missing in sorted(wanted - {r.id for r in failed} - {r.batch_id for r in failed}):
                print(f"{missing}: no failed file or batch with this id", file=sys.stderr)
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
        if not failed:
            print("nothing to retry")
        return code
    finally:
        store.close()
