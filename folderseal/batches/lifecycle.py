"""The one lifecycle table: what a batch's state says a provider may have done with its
files, and how a remote batch's state reads. The state machine, ``recover`` and ``retry``
decide by it (docs/design.md, "The lifecycle table"); nothing else spells these rules out.

=================================  ==========================================
batch state                          what the provider may have done
=================================  ==========================================
BATCHED                            nothing: nothing was sent
CREATED, UPLOADED                  received them, never started: the remote
                                   batch may be abandoned and the files batched
                                   again
ACCEPTING, ACCEPTED, CLOSED,       may have run (signed, stored, loaded): never
DOWNLOADED                         submitted again — when the provider's accept
                                   is irrevocable; otherwise (local) running
                                   again is harmless until delivery
DELIVERED, CLEANED                 delivered
=================================  ==========================================

FAILED is judged by the step it failed in (``BatchRecord.failed_step``).
"""

from __future__ import annotations

import enum

from folderseal.core.model import BatchState
from folderseal.providers import Remote, Steps


class Reach(enum.IntEnum):
    """How far a batch's files got with the provider, in order."""

    NOTHING_SENT = 0   # nothing left the work folder
    SENT = 1           # sent, never started: may be abandoned and batched again
    MAY_HAVE_RUN = 2   # accept may have been sent: the point of no return
    DELIVERED = 3      # outputs and sidecars durable


REACH: dict[BatchState, Reach] = {
    BatchState.BATCHED: Reach.NOTHING_SENT,
    BatchState.CREATED: Reach.SENT,
    BatchState.UPLOADED: Reach.SENT,
    BatchState.ACCEPTING: Reach.MAY_HAVE_RUN,
    BatchState.ACCEPTED: Reach.MAY_HAVE_RUN,
    BatchState.CLOSED: Reach.MAY_HAVE_RUN,
    BatchState.DOWNLOADED: Reach.MAY_HAVE_RUN,
    BatchState.DELIVERED: Reach.DELIVERED,
    BatchState.CLEANED: Reach.DELIVERED,
}

# A remote batch in these states was started: its files may have run already.
STARTED = frozenset({Remote.RUNNING, Remote.CLOSED, Remote.FAILED})
# A remote batch in these states was never started: it may still be abandoned.
OPEN = frozenset({Remote.NEW, Remote.UPLOADED})
# The provider is done with a started batch: its results can be downloaded.
FINISHED = frozenset({Remote.CLOSED, Remote.FAILED})


def reach(state: BatchState | str | None) -> Reach:
    """How far a batch in ``state`` got (FAILED: pass the step it failed in). A state
    that says nothing (none recorded, FAILED itself, a name this version does not know)
    reads as "may have run": the safe side, on which nothing is submitted again."""
    try:
        return REACH[BatchState(state or "")]
    except (ValueError, KeyError):
        return Reach.MAY_HAVE_RUN


def past_no_return(state: BatchState | str | None) -> bool:
    """ACCEPTING was stored: accept may have reached the provider."""
    return reach(state) >= Reach.MAY_HAVE_RUN


def may_have_run(state: BatchState | str | None, steps: Steps) -> bool:
    """The files of a batch in ``state`` may have been signed/stored/loaded, and so must
    never be submitted again (for a provider whose accept is irrevocable)."""
    return steps.irrevocable and past_no_return(state)

