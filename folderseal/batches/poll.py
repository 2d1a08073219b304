"""After accept (ACCEPTED, CLOSED): wait for the provider to finish the batch, then fetch
each file's result. A batch that does not finish within the provider's max_wait fails;
so does a result still pending by then, each with its own reason.
"""

from __future__ import annotations

import dataclasses

from folderseal.batches import accept, creates, lifecycle
from folderseal.batches.context import StepContext
from folderseal.core.errors import NotSent, ProviderError, TransientError
from folderseal.core.model import BatchRecord, BatchState, DocumentResult, FileState
from folderseal.providers import Provider, Remote, ask_status


def poll(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """ACCEPTED: wait for the provider to finish the batch (closed, or failed: its
    download turns that into per-document failures)."""
    provider = ctx.provider
    view = ctx.view(batch)
    # Once max_wait has passed the batch is asked one last time: a batch whose poll
    # waited behind others (a busy daemon, a spent request budget) is judged by the
    # provider's answer, not by how long it waited for its turn to ask. A failing ask
    # then ends it too, so it holds while status calls keep failing.
    overdue = ctx.store.clock() - ctx.since(batch, BatchState.ACCEPTED) > provider.max_wait
    try:
        status = ask_status(provider, view, batch.remote_id or "")
    except NotSent:
        raise  # not asked yet (its turn to ask has not come): no answer to judge by
    except TransientError:
        if overdue:
            _never_closed(batch, provider)
        raise
    if overdue and status.state not in lifecycle.FINISHED:
        _never_closed(batch, provider)
    if status.progress is not None:
        ctx.store.set_progress(batch, status.progress)
        ctx.log.info("batch.progress", batch=batch.id, remote=batch.remote_id,
                     progress=status.progress)
    if status.state in lifecycle.FINISHED:
        return ctx.move(batch, BatchState.CLOSED, detail=None if status.state ==
                        Remote.CLOSED else f"the provider says {status.state}")
    if status.state == Remote.GONE:
        if creates.may_not_show_yet(ctx, batch, BatchState.ACCEPTED):
            return ctx.wait(batch)  # a batch just created may not show yet
        return accept.lost_after_accept(ctx, batch, view, status)
    if status.state == Remote.UPLOADED and not provider.steps.irrevocable:
        return accept.send_accept(ctx, batch, view)
    ctx.store.release(batch, ctx.store.clock() + provider.poll_interval)
    return None


def _never_closed(batch: BatchRecord, provider: Provider) -> None:
    raise ProviderError("never_closed",
                        f"batch {batch.remote_id} did not close within "
                        f"{provider.max_wait:.0f} s (max_wait_seconds); its files may have "
                        f"been {provider.steps.outcome}: check with the provider; "
                        "`folderseal retry` asks the same batch again",
                        provider=batch.provider, operation="status", batch=batch.id)


def download(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """CLOSED: fetch the results and record each file's outcome. While a result is
    pending (Clevver: a receipt without its txid) the batch waits and asks again at
    the next poll; once max_wait since ACCEPTED has passed, a pending result fails
    with its own reason."""
    provider = ctx.provider
    view = ctx.view(batch)
    results = {r.entry: r for r in provider.download(view, batch.remote_id or "")}
    pending = sum(1 for d in view.documents
                  if (r := results.get(d.entry)) is not None and r.pending)
    if pending and ctx.store.clock() - ctx.since(batch, BatchState.ACCEPTED) <= \
            provider.max_wait:
        ctx.log.info("batch.results_pending", batch=batch.id, remote=batch.remote_id,
                     pending=pending)
        return ctx.wait(batch)
    with ctx.store.transaction():
        for document in view.documents:
            result = results.get(document.entry) or DocumentResult(
                entry=document.entry, error_code="missing",
                error_message="the provider returned no result for this file")
            if result.pending:
                result = _timed_out(result, provider)
            ctx.store.set_file_result(document.file_id, FileState.BATCHED, result,
                                      batch_id=batch.id)
        ctx.store.transition(batch, BatchState.DOWNLOADED)
    ctx.forget_view()  # its files are no longer waiting for the provider
    return ctx.moved(batch, BatchState.DOWNLOADED)


def _timed_out(result: DocumentResult, provider: Provider) -> DocumentResult:
    """A result still pending once max_wait has passed: a failure, with the provider's
    own reason when it gave one."""
    return dataclasses.replace(
        result, pending=False, error_code=result.error_code or "no_result",
        error_message=result.error_message or (
            f"the provider gave no final result for this file within {provider.max_wait:.0f} "
            f"s (max_wait_seconds); it may have been {provider.steps.outcome}: check with "
            "the provider; `folderseal retry` asks again"))
