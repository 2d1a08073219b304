"""The lease keeper: renews the leases this daemon's batch threads hold while their
steps run, so a long upload or signing is not taken over mid-step.

Every ``lease_seconds / 4`` it renews each lease the store connections of this daemon
share (:class:`~folderseal.store.leases.Leases`), on a connection of its own. It stops
renewing a batch whose turn has run past ``step_limit`` seconds: a step that long is
stuck, and the batch is better taken over by another node than held for ever. A lease
it finds taken over is dropped and logged (``lease.lost``); the batch thread then finds
it gone before its next call to the provider.
"""

from __future__ import annotations

import threading

from folderseal.core.errors import LeaseLost, TransientError
from folderseal.core.logs import get as get_logger
from folderseal.store import Store

STEP_LIMIT_SECONDS = 6 * 3600.0  # a batch's turn longer than this is stuck


def keep_leases(store: Store, stop: threading.Event,
                step_limit: float = STEP_LIMIT_SECONDS) -> None:
    """Renew the shared leases until ``stop``; ``store`` is this thread's own connection
    (as this daemon's node, so it shares the batch threads' leases)."""
    log = get_logger()
    leases = store.leases
    while not stop.wait(leases.seconds / 4):
        for batch_id, lease in leases.held().items():
            if leases.clock() - lease.taken > step_limit:
                continue  # left to lapse: the turn is stuck
            try:
                # Never queued behind a step's write (one long write would starve every
                # other lease of this node): a batch at work is renewed next round.
                store.renew_lease(batch_id, wait=False)
            except LeaseLost as exc:
                try:
                    now = store.batch(batch_id)  # released meanwhile is no loss
                except TransientError:
                    continue
                if now is not None and now.claimed_by not in (None, lease.holder):
                    log.warning("lease.lost", batch=batch_id, reason=str(exc),
                                next_step="none: another thread or node has the batch now")
            except TransientError as exc:  # the store does not answer: the next round tries
                log.warning("lease.renew_failed", batch=batch_id, reason=str(exc),
                            next_step="check that the store answers; the batch stops before "
                            "its next provider call if the lease runs out meanwhile")
