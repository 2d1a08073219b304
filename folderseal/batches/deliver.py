"""The end of a batch (DOWNLOADED, DELIVERED, FAILED): publish outputs and sidecars,
then remove the originals (or archive them), the remote batch and what the batch kept
in the state folder; or, for a failed batch, put each file into errors with its record
and remove what it published.
"""

from __future__ import annotations

from folderseal.batches.context import StepContext
from folderseal.core import crashpoints
from folderseal.core.errors import ProviderError, TransientError
from folderseal.core.model import BatchRecord, BatchState, FileState
from folderseal.providers import OUTCOME_UNKNOWN, BatchView


def deliver(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """DOWNLOADED: publish outputs and sidecars; failed files go to errors."""
    records = ctx.store.files_of_batch(batch.id)
    ctx.sink.deliver(records, ctx.delivery(batch, len(records)),
                     keep_lease=lambda: ctx.store.keep_lease(batch.id))
    crashpoints.reached("sidecar-published")
    return ctx.move(batch, BatchState.DELIVERED)


def clean(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """DELIVERED: remove originals (or archive them), then the remote batch."""
    ctx.sink.finish(ctx.store.files_of_batch(batch.id),
                    keep_lease=lambda: ctx.store.keep_lease(batch.id))
    crashpoints.reached("original-removed")
    view = ctx.view(batch)
    try:
        ctx.provider.delete(view, batch.remote_id or "")
    except (TransientError, ProviderError) as exc:
        # The outputs are safe; the remote copy is removed on a later pass.
        ctx.log.warning("batch.delete_failed", batch=batch.id, reason=str(exc))
        raise TransientError(f"deleting the remote batch failed: {exc}") from exc
    if batch.publish_key:
        ctx.store.set_publish_key(batch, None)
    ctx.store.keep_lease(batch.id)
    ctx.staging.remove(ctx.work, batch.id)  # delivered: no holder needs it again
    if not ctx.work.remove_batch(batch.id):
        # An original that could not go to errors is kept here, on record.
        ctx.log.warning("batch.folder_kept", batch=batch.id, folder=str(view.files_dir))
    if view.package is not None:  # what prepare made
        view.package.unlink(missing_ok=True)
    moved = ctx.move(batch, BatchState.CLEANED)
    ctx.store.release(moved, None)
    return None


def sink_failures(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """FAILED: move each rejected file to errors with its record; then rest."""
    records = ctx.store.files_of_batch(batch.id)
    context = ctx.delivery(batch, len(records))
    try:
        for record in records:
            if record.state == FileState.REJECTED:
                ctx.store.keep_lease(batch.id)
                ctx.sink.fail(record, context)
    except TransientError as exc:  # the errors folder is full or gone: come back later
        ctx.log.warning("batch.failures_postponed", batch=batch.id, reason=str(exc))
        delay = ctx.retry_delay()(batch.attempts + 1)
        ctx.store.release(batch, ctx.store.clock() + delay)
        return None
    # Every file is in errors: what the batch left in the state folder can go (a
    # retry of a remote batch downloads again; one before accept re-batches).
    ctx.store.keep_lease(batch.id)
    view = ctx.view(batch)
    ctx.staging.remove(ctx.work, batch.id)
    if view.package is not None:
        view.package.unlink(missing_ok=True)
    ctx.store.release(batch, _unpublish_failed(ctx, batch, view))
    return None


def _unpublish_failed(ctx: StepContext, batch: BatchRecord, view: BatchView) -> float | None:
    """Remove what a failed batch published (Steps.publishes); when it cannot be
    removed yet, the time to come back. After OUTCOME_UNKNOWN it stays for max_wait
    (the provider may still fetch it for a create whose answer was lost), then goes:
    a later fetch fails, which loads nothing."""
    if not batch.publish_key:
        return None
    provider = ctx.provider
    due = ctx.since(batch, BatchState.FAILED) + (
        provider.max_wait if batch.error_code == OUTCOME_UNKNOWN else 0.0)
    if ctx.store.clock() < due:
        return due
    try:
        provider.delete(view, batch.remote_id or "")
    except (TransientError, ProviderError) as exc:
        ctx.log.warning("batch.unpublish_failed", batch=batch.id,
                        key=provider.shown(batch.publish_key),
                        reason=str(exc), retry="later")
        return ctx.store.clock() + ctx.retry_delay()(batch.attempts + 1)
    ctx.store.set_publish_key(batch, None)
    return None
