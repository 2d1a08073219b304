"""Providers whose accept creates the remote batch (Centrapay: creating is starting).

Before accept there is no remote batch, so nothing can be abandoned or asked; after
it, an answer that was lost cannot be looked up. Such a batch may not show at once
(the provider's status grace), and files whose fate cannot be learnt fail as
OUTCOME_UNKNOWN: never sent again unasked.
"""

from __future__ import annotations

from datetime import UTC, datetime

from folderseal.batches.context import StepContext
from folderseal.core.errors import ProviderError
from folderseal.core.model import BatchRecord, BatchState
from folderseal.providers import OUTCOME_UNKNOWN


def may_not_show_yet(ctx: StepContext, batch: BatchRecord, since: BatchState) -> bool:
    """A batch that accept created since ``since`` was entered, within the provider's
    status grace: a status of "gone" may only mean it does not show yet."""
    return ctx.provider.steps.accept_creates and ctx.within_grace(ctx.since(batch, since))


def created_by_accept(ctx: StepContext, batch: BatchRecord) -> BatchRecord:
    """ACCEPTING, where accept creates the remote batch: its id as the answer gave it
    (the store's, or the manifest's when the store lost that write). With none, the
    answer was lost and the provider cannot be asked: the files may have been taken,
    and are never sent again unasked (OUTCOME_UNKNOWN)."""
    if batch.remote_id:
        return batch
    ids = ctx.work.manifests.remote_ids(batch.id)
    if ids:
        ctx.store.set_remote_id(batch, ids[-1])
        learnt = ctx.store.batch(batch.id)
        assert learnt is not None
        return learnt
    raise outcome_unknown(ctx, batch, "the answer to its create was lost")


def outcome_unknown(ctx: StepContext, batch: BatchRecord, why: str) -> ProviderError:
    """The files of a batch whose accept created its remote batch, when the provider
    cannot tell whether it took them: never sent again unasked."""
    provider = ctx.provider
    since = datetime.fromtimestamp(ctx.since(batch, BatchState.ACCEPTING), UTC)
    name = provider.kind.capitalize()
    remote = f" (its batch there is {batch.remote_id})" if batch.remote_id else ""
    return ProviderError(
        OUTCOME_UNKNOWN,
        # ACCEPTING is stored right before the create is sent, by whichever node held
        # the batch: the create went out then or a moment later, never before.
        f"{why} (the create was sent at or just after "
        f"{since.isoformat(timespec='seconds')}): it may "
        f"have been {provider.steps.outcome}: look for a batch created at this time for "
        f"this file in {name}{remote} before retrying (published as "
        f"{provider.shown(batch.publish_key) if batch.publish_key else '-'}; the error record "
        "names it whole in provider.published); if there is none, `folderseal retry --force "
        "<retry_id>` sends it again (never `retry --all`)",
        provider=batch.provider, operation="accept", batch=batch.id)
