"""The end of a batch (DOWNLOADED, DELIVERED, FAILED): publish outputs and sidecars,
then remove the originals (or archive them), the remote batch and what the batch kept
in the state folder; or, for a failed batch, put each file into errors with its record
and remove what it published.
"""

from __future__ import annotations

import shutil

from folderseal.core import crashpoints
from folderseal.core.errors import ProviderError, TransientError
from folderseal.core.model import FileState, JobRecord, JobState
from folderseal.jobs.context import StepContext
from folderseal.providers import OUTCOME_UNKNOWN, BatchView


def deliver(ctx: StepContext, job: JobRecord) -> JobRecord | None:
    """DOWNLOADED: publish outputs and sidecars; failed files go to errors."""
    records = ctx.store.files_of_job(job.id)
    ctx.sink.deliver(records, ctx.delivery(job, len(records)),
                     keep_lease=lambda: ctx.store.keep_lease(job.id))
    crashpoints.reached("sidecar-published")
    return ctx.move(job, JobState.DELIVERED)


def clean(ctx: StepContext, job: JobRecord) -> JobRecord | None:
    """DELIVERED: remove originals (or archive them), then the remote batch."""
    ctx.sink.finish(ctx.store.files_of_job(job.id))
    crashpoints.reached("original-removed")
    view = ctx.view(job)
    try:
        ctx.provider.delete(view, job.remote_id or "")
    except (TransientError, ProviderError) as exc:
        # The outputs are safe; the remote copy is removed on a later pass.
        ctx.log.warning("batch.delete_failed", batch=job.id, reason=str(exc))
        raise TransientError(f"deleting the remote batch failed: {exc}") from exc
    if job.publish_key:
        ctx.store.set_publish_key(job, None)
    shutil.rmtree(view.staging, ignore_errors=True)
    if not ctx.work.remove_batch(job.id):
        # An original that could not go to errors is kept here, on record.
        ctx.log.warning("batch.folder_kept", batch=job.id, folder=str(view.files_dir))
    if view.package is not None:  # what prepare made
        view.package.unlink(missing_ok=True)
    moved = ctx.move(job, JobState.CLEANED)
    ctx.store.release(moved, None)
    return None


def sink_failures(ctx: StepContext, job: JobRecord) -> JobRecord | None:
    """FAILED: move each rejected file to errors with its record; then rest."""
    records = ctx.store.files_of_job(job.id)
    context = ctx.delivery(job, len(records))
    try:
        for record in records:
            if record.state == FileState.REJECTED:
                ctx.sink.fail(record, context)
    except TransientError as exc:  # the errors folder is full or gone: come back later
        ctx.log.warning("batch.failures_postponed", batch=job.id, reason=str(exc))
        delay = ctx.retry_delay()(job.attempts + 1)
        ctx.store.release(job, ctx.store.clock() + delay)
        return None
    # Every file is in errors: what the batch left in the state folder can go (a
    # retry of a remote batch downloads again; one before accept re-batches).
    view = ctx.view(job)
    shutil.rmtree(view.staging, ignore_errors=True)
    if view.package is not None:
        view.package.unlink(missing_ok=True)
    ctx.store.release(job, _unpublish_failed(ctx, job, view))
    return None


def _unpublish_failed(ctx: StepContext, job: JobRecord, view: BatchView) -> float | None:
    """Remove what a failed batch published (Steps.publishes); when it cannot be
    removed yet, the time to come back. After OUTCOME_UNKNOWN it stays for max_wait
    (the provider may still fetch it for a create whose answer was lost), then goes:
    a later fetch fails, which loads nothing."""
    if not job.publish_key:
        return None
    provider = ctx.provider
    due = ctx.since(job, JobState.FAILED) + (
        provider.max_wait if job.error_code == OUTCOME_UNKNOWN else 0.0)
    if ctx.store.clock() < due:
        return due
    try:
        provider.delete(view, job.remote_id or "")
    except (TransientError, ProviderError) as exc:
        ctx.log.warning("batch.unpublish_failed", batch=job.id,
                        key=provider.shown(job.publish_key),
                        reason=str(exc), retry="later")
        return ctx.store.clock() + ctx.retry_delay()(job.attempts + 1)
    ctx.store.set_publish_key(job, None)
    return None
