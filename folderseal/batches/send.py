"""The steps before accept (BATCHED, CREATED): create the remote batch and send the
documents; and what any step before the point of no return does when the remote batch
may not hold exactly this batch: abandon it (it was never started) for a new one.

Abandons are counted by cause: answers the network lost (no limit but a safety cap)
and a provider showing something other than what was sent (``MAX_RECREATES``).
"""

from __future__ import annotations

import dataclasses

from folderseal.batches import lifecycle
from folderseal.batches.context import StepContext
from folderseal.core.errors import ProviderError, TransientError
from folderseal.core.model import BatchRecord, BatchState
from folderseal.intake import batching as batching
from folderseal.providers import (
    Abandon,
    BatchView,
    Remote,
    RemoteDocument,
    RemoteStatus,
    ask_status,
)

# Remote batches a batch may abandon because the provider showed something other than
# what was sent, before the batch fails (remote_mismatch).
MAX_RECREATES = 3
# Abandons because an answer was lost are the network's fault and use up no limit: past
# this many, each further one is followed by a pause (the batch's backoff, which grows),
# so a batch does not feed an unreliable provider at full speed; its files never fail
# for it.
MAX_LOST_ANSWERS = 20


def create(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """BATCHED: finish moving files in, let the provider prepare what goes up (SEAL:
    its package), create the remote batch."""
    provider = ctx.provider
    batching.move_into_batch(ctx.work, batch.id, batch.provider, ctx.store.files_of_batch(batch.id))
    if (caught := catch_up(ctx, batch)) is not None:
        return caught
    ledger = ctx.ledger(batch)
    made = provider.prepare(ctx.view(batch), ledger)
    view = ctx.view(batch)  # read afresh: prepare may have rejected files
    if not view.documents:
        return nothing_left(ctx, batch, view)
    if made is not None and made != view.prepared:
        ctx.store.set_package(batch, *made)
    remote_id = provider.create(view, ledger)
    ctx.note_remote_id(batch, remote_id)
    return ctx.move(batch, BatchState.CREATED, remote_id=remote_id or None)


def upload(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """CREATED: send the documents. After any doubt the remote status decides: the
    provider proves it holds the upload → uploaded; nothing sent there yet, or sent
    document by document with each send noted (the provider goes on where it stopped,
    and abandons on a send in doubt) → upload; sent in one piece and not showing →
    wait out the grace, then abandon this remote batch (never started) for a new one.
    One remote batch never gets the same upload twice."""
    if (caught := catch_up(ctx, batch)) is not None:
        return caught
    provider = ctx.provider
    view = ctx.view(batch)
    remote_id = batch.remote_id or ""
    if not view.documents:
        return nothing_left(ctx, batch, view)
    status = ask_status(provider, view, remote_id)
    if status.state in lifecycle.STARTED:
        return found_accepted(ctx, batch, status)
    if provider.holds_upload(view, status):
        return ctx.move(batch, BatchState.UPLOADED, detail="found uploaded")
    sent = ctx.store.upload_sent_at(batch.id, remote_id)
    noted = any(d.remote is not None and d.remote.batch == remote_id
                for d in view.documents)
    empty = status.state in lifecycle.OPEN and not status.documents
    if status.state in lifecycle.OPEN and ((empty and sent is None) or noted):
        if sent is None:
            ctx.store.note_upload(batch, remote_id)  # durable before the upload goes out
        provider.upload(view, remote_id, ctx.ledger(batch))
        ctx.forget_view()  # the provider's answers changed the documents
        return ctx.move(batch, BatchState.UPLOADED)
    if empty and sent is not None and ctx.within_grace(sent):
        return ctx.wait(batch)  # it may still be unpacking what was sent
    return abandon(ctx, batch, view, f"remote batch is {status.state} with "
                   f"{len(status.documents)} documents"
                   f"{' after an upload was sent' if sent else ''}",
                   lost_answer=empty)


def found_accepted(ctx: StepContext, batch: BatchRecord, status: RemoteStatus) -> BatchRecord:
    """Before accept, the remote batch shows started: the store is behind (restored
    from a copy, or it lost its last writes). Its files may have run: go on from
    ACCEPTED, never abandon it and submit them again."""
    ctx.log.warning("batch.store_behind", batch=batch.id, remote=batch.remote_id,
                    state=batch.state, remote_state=str(status.state))
    return ctx.move(batch, BatchState.ACCEPTED, detail=f"found {status.state} before "
                    "accept: the store was behind")


def catch_up(ctx: StepContext, batch: BatchRecord) -> BatchRecord | None:
    """Before anything is sent: a remote batch the batch's manifest names but the store
    does not (a store restored from a copy, or one that lost its last writes) decides
    first, so that files it may have run are never submitted again. Started → on from
    ACCEPTED; holding the upload → ACCEPTING (its status decides on accept); created
    or uploaded in part (never started) → deleted, and the step goes on."""
    provider = ctx.provider
    if not provider.steps.remote:
        return None
    ids = ctx.work.manifests.remote_ids(batch.id)
    if not ids or ids[-1] == batch.remote_id:
        return None
    newer, view = ids[-1], _noted_in_manifest(ctx, batch, ctx.view(batch))
    status = ask_status(provider, view, newer)
    ctx.log.warning("batch.store_behind", batch=batch.id, remote=newer,
                    stored=batch.remote_id, remote_state=str(status.state))
    if status.state in lifecycle.STARTED:
        return ctx.move(batch, BatchState.ACCEPTED, remote_id=newer,
                        detail=f"found accepted: {newer}")
    if provider.steps.accept_creates:
        # Its accept created it: it was accepted, whatever its status shows now.
        return ctx.move(batch, BatchState.ACCEPTING, remote_id=newer,
                        detail=f"found created: {newer}")
    if provider.holds_upload(view, status):
        # Its start may have been sent and not shown yet: ACCEPTING, whose grace
        # decides; the store learns the answers the manifest kept.
        for document in view.documents:
            if document.remote is not None:
                ctx.store.note_remote_document(batch.id, document.file_id,
                                               document.remote.to_json())
        ctx.forget_view()
        return ctx.move(batch, BatchState.ACCEPTING, remote_id=newer,
                        detail=f"found uploaded: {newer}")
    if status.state != Remote.GONE:
        provider.delete(view, newer)
    return None


def _noted_in_manifest(ctx: StepContext, batch: BatchRecord, view: BatchView) -> BatchView:
    """The view with each document's answer as the manifest keeps it (written before
    the store's): what a store that lost its last writes no longer knows."""
    notes = ctx.work.manifests.document_notes(batch.id)
    return dataclasses.replace(view, documents=tuple(
        dataclasses.replace(d, remote=RemoteDocument.from_json(notes.get(d.file_id))
                            or d.remote) for d in view.documents))


def abandoned(ctx: StepContext, batch_id: str, exc: Abandon) -> BatchRecord:
    """A step raised Abandon: this remote batch may not hold exactly what was sent."""
    batch = ctx.store.batch(batch_id)
    assert batch is not None
    if lifecycle.past_no_return(batch.state):
        raise exc  # accept may have been sent: never abandoned (a provider's bug)
    return abandon(ctx, batch, ctx.view(batch), exc.why, lost_answer=exc.lost_answer)


def abandon(ctx: StepContext, batch: BatchRecord, view: BatchView, why: str, *,
            lost_answer: bool) -> BatchRecord:
    """Abandon a remote batch that was never started and start a new one, counting the
    abandon by its cause. After MAX_RECREATES mismatches the batch fails (nothing was
    accepted, so retry submits it afresh); past MAX_LOST_ANSWERS lost answers each
    abandon is followed by the batch's backoff."""
    provider = ctx.provider
    old = batch.remote_id or ""
    lost, mismatched = ctx.store.abandons(batch.id)
    if not lost_answer and mismatched >= MAX_RECREATES:
        raise ProviderError(
            "remote_mismatch",
            f"the provider's batch did not match what was uploaded {MAX_RECREATES + 1} "
            f"times ({why}); nothing was accepted: ask the provider's administrator, "
            "then `folderseal retry` submits the files afresh",
            provider=batch.provider, operation="upload", batch=batch.id)
    # The new remote batch first: if create fails, the old one is still there to
    # be judged again (a deleted one would read as gone, a mismatch).
    remote_id = provider.create(view, ctx.ledger(batch))
    ctx.note_remote_id(batch, remote_id)
    if old:
        try:
            provider.delete(view, old)
        except (TransientError, ProviderError) as exc:
            ctx.log.warning("batch.abandon_failed", batch=batch.id, remote=old,
                            reason=str(exc))
    # Past MAX_LOST_ANSWERS the batch pauses after each abandon, by its attempts: kept,
    # so the pauses grow.
    paused = lost_answer and lost + 1 >= MAX_LOST_ANSWERS
    ctx.store.abandon(batch, remote_id, lost_answer=lost_answer, why=why, keep_attempts=paused)
    ctx.log.warning("batch.abandoned", batch=batch.id, remote=old, reason=why,
                    cause="answer_lost" if lost_answer else "mismatch",
                    new_remote=remote_id)
    ctx.forget_view()
    if paused:
        raise TransientError(
            f"{lost + 1} remote batches were abandoned because an answer was lost "
            f"({why}); nothing was accepted, and the next one waits: check the network "
            "to the provider and its health")
    moved = ctx.store.batch(batch.id)
    assert moved is not None
    return moved


def nothing_left(ctx: StepContext, batch: BatchRecord, view: BatchView) -> BatchRecord:
    """Before accept, every file was taken out of the batch (rejected): nothing is
    accepted; delivery puts them in errors with their reasons."""
    if batch.remote_id and ctx.provider.steps.remote:
        try:
            ctx.provider.delete(view, batch.remote_id)
        except (TransientError, ProviderError) as exc:
            ctx.log.warning("batch.abandon_failed", batch=batch.id, remote=batch.remote_id,
                            reason=str(exc))
    return ctx.move(batch, BatchState.DOWNLOADED, detail="every file was rejected before "
                    "accept")
