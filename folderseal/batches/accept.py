"""The point of no return (UPLOADED, ACCEPTING): accept is sent only once the provider
proves the remote batch holds the upload, after ACCEPTING is stored; after it, a batch
the provider no longer shows as sent is never submitted again.
"""

from __future__ import annotations

import dataclasses

from folderseal.batches import creates, lifecycle, send
from folderseal.batches.context import StepContext
from folderseal.core.errors import NotSent, ProviderError
from folderseal.core.model import BatchRecord, BatchState, DocumentResult, FileState
from folderseal.providers import BatchView, Remote, RemoteStatus, ask_status


def accept(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """UPLOADED: the provider proves the remote batch holds the upload; store
    ACCEPTING (the point of no return), then accept."""
    if (caught := send.catch_up(ctx, batch)) is not None:
        return caught
    provider = ctx.provider
    view = ctx.view(batch)
    if not view.documents:
        return send.nothing_left(ctx, batch, view)
    status = ask_status(provider, view, batch.remote_id or "")
    if status.state in lifecycle.STARTED:
        return send.found_accepted(ctx, batch, status)
    if (held := _rejected_copies(ctx, batch)):  # a crash came before its abandon
        return send.abandon(ctx, batch, view, f"remote batch holds a copy of "
                            f"{held[0]}, which was rejected", lost_answer=False)
    if not provider.holds_upload(view, status):
        empty = status.state in lifecycle.OPEN and not status.documents
        if empty and ctx.within_grace(ctx.since(batch, BatchState.UPLOADED)):
            return ctx.wait(batch)  # the upload may not show yet
        return send.abandon(ctx, batch, view, f"remote batch is {status.state} with "
                            f"{len(status.documents)} documents before accept",
                            lost_answer=empty)
    batch = ctx.move(batch, BatchState.ACCEPTING)
    return send_accept(ctx, batch, view)


def _rejected_copies(ctx: StepContext, batch: BatchRecord) -> list[str]:
    """Files rejected from the batch that its remote batch took (Clevver: a wrong
    copy): that remote batch is never started, or the copy would be stored."""
    notes = ctx.store.remote_documents(batch.id)
    return [r.entry or r.source for r in ctx.store.files_of_batch(batch.id)
            if r.state == FileState.REJECTED and (n := notes.get(r.id)) is not None
            and n.get("batch") == batch.remote_id and n.get("id")]


def send_accept(ctx: StepContext, batch: BatchRecord, view: BatchView) -> BatchRecord | None:
    try:
        ctx.provider.accept(view, batch.remote_id or "", ctx.ledger(batch))
    except NotSent as exc:
        # It surely never reached the provider: back before the point of no return,
        # and accept is sent again once the wait is over.
        ctx.store.transition(batch, BatchState.UPLOADED, detail=f"accept not sent: {exc}")
        raise
    ctx.forget_view()
    if ctx.stop.is_set():
        ctx.store.release(batch, ctx.store.clock())
        return None
    return ctx.move(batch, BatchState.ACCEPTED)


def accept_again(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """ACCEPTING: accept may or may not have arrived; ask before sending it again.

    Started → ACCEPTED. Still holding the upload, never started → accept again: at
    once where accept is no point of no return (local); otherwise only once the
    provider had its status grace to show an accept that did arrive (an accept is
    processed asynchronously), and only on a status given by name. Anything else →
    what can still be proven is delivered, the rest fails as "may have been signed".
    """
    provider = ctx.provider
    if provider.steps.accept_creates:
        batch = creates.created_by_accept(ctx, batch)
    view = ctx.view(batch)
    status = ask_status(provider, view, batch.remote_id or "")
    if status.state in lifecycle.STARTED:
        return ctx.move(batch, BatchState.ACCEPTED, detail="found accepted")
    if status.state == Remote.GONE and creates.may_not_show_yet(ctx, batch, BatchState.ACCEPTING):
        return ctx.wait(batch)  # a batch just created may not show yet
    if status.state in lifecycle.OPEN and provider.holds_upload(view, status):
        if not provider.steps.irrevocable:
            return send_accept(ctx, batch, view)
        since = ctx.since(batch, BatchState.ACCEPTING)
        now = ctx.store.clock()
        if status.trusted and not ctx.within_grace(since):
            return send_accept(ctx, batch, view)
        if now - since > provider.max_wait:
            shown = status.detail or status.state
            raise ProviderError("never_accepted",
                                f"batch {batch.remote_id} still shows {shown} "
                                f"{provider.max_wait:.0f} s after accept was sent; its "
                                f"files may have been {provider.steps.outcome}: check "
                                "with the provider",
                                provider=batch.provider, operation="accept", batch=batch.id)
        return ctx.wait(batch)
    return lost_after_accept(ctx, batch, view, status)


def lost_after_accept(ctx: StepContext, batch: BatchRecord, view: BatchView,
                      status: RemoteStatus) -> BatchRecord:
    """After ACCEPTING the provider no longer shows the batch as sent: what it can
    still prove (``salvage``) is recorded and delivered; every other file fails as
    "may have been signed/stored/loaded" and is never submitted again."""
    provider = ctx.provider
    lost = (f"the provider no longer knows batch {batch.remote_id} ({status.state}"
            f"{': ' + status.detail if status.detail else ''})")
    if provider.steps.accept_creates:  # nothing else to ask: it may have loaded them
        raise creates.outcome_unknown(
            ctx, batch, f"{lost} {provider.status_grace:.0f} s (status_grace_seconds) "
            "after creating it")
    message = (f"{lost}; its files may have been {provider.steps.outcome}: check with "
               "the provider before retrying")
    salvaged = {r.entry: r for r in provider.salvage(view, batch.remote_id or "") if r.ok}
    if not salvaged:
        raise ProviderError("lost_after_accept", message, provider=batch.provider,
                            operation="status", batch=batch.id)
    failed = DocumentResult(entry="", error_code="lost_after_accept",
                            error_message=message)
    with ctx.store.transaction():
        for document in view.documents:
            result = salvaged.get(document.entry) or \
                dataclasses.replace(failed, entry=document.entry)
            ctx.store.set_file_result(document.file_id, FileState.BATCHED, result,
                                      batch_id=batch.id)
        ctx.store.transition(batch, BatchState.DOWNLOADED,
                             detail=f"salvaged {len(salvaged)} of {len(view.documents)} "
                                    "files after the provider lost the batch")
    ctx.log.warning("batch.salvaged", batch=batch.id, remote=batch.remote_id,
                    salvaged=len(salvaged), lost=len(view.documents) - len(salvaged))
    ctx.forget_view()
    return ctx.moved(batch, BatchState.DOWNLOADED)
