"""Fragments: a file that appears where a file was claimed moments ago.

A writer that opens, appends and closes a file with pauses longer than
``settle_seconds`` gets each part claimed and sealed on its own (``slow.txt``,
``slow-1.txt``, …). For the formats that say when they are whole,
:mod:`folderseal.intake.complete` keeps that from happening; for the others folderseal
cannot know, but it can notice: a file found at a path claimed within the last
10 × ``settle_seconds`` (at least 30 s) is logged as ``file.fragment_suspected`` and
recorded as an event of the earlier claim, which ``status`` shows for a day.

The recent claims are kept in memory, in claim order. At start they are read back
from the store (claim ids begin with their time, so the primary key finds them), so a
restart forgets none of the window; the suspicions themselves are events in the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from folderseal.core.logs import get as get_logger
from folderseal.store import Store

WINDOW_FACTOR = 10
MIN_WINDOW_SECONDS = 30.0
SHOWN_SECONDS = 24 * 3600.0  # how long status shows a suspicion
EVENT = "file.fragment_suspected"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim that a file appearing at the same path may continue."""

    id: str
    at: float


def advice(settle_seconds: float) -> str:
    """What a suspected fragment means, and what to do about it."""
    return (f"a writer paused longer than settle_seconds ({settle_seconds:g} s) between "
            "writes? Then its parts are sealed separately, each into the outbox with its own "
            "sidecar (later parts as NAME-1, NAME-2…). To have the whole file sealed, copy "
            "the complete file into the inbox again once it is written; to prevent this, "
            "raise settle_seconds, or have the writer write under a temporary name and "
            "rename when done")


class Fragments:
    """The paths of one inbox claimed within the window (oldest first), and the warning
    when a file turns up at one of them."""

    def __init__(self, folder: str, settle_seconds: float, store: Store) -> None:
        self.settle = settle_seconds
        self.window = max(MIN_WINDOW_SECONDS, WINDOW_FACTOR * settle_seconds)
        self.store = store
        self.folder = folder
        self.log = get_logger(folder=folder)
        self._claims: dict[str, Claimed] = {}

    def start(self, now: float) -> None:
        """Read the claims of the window back from the store (after a restart)."""
        for claim_id, source, at in sorted(self.store.recent_claims(self.folder,
                                                                    now - self.window),
                                           key=lambda c: c[2]):
            self.claimed(source, claim_id, at)

    def claimed(self, source: str, claim_id: str, at: float) -> None:
        self._claims.pop(source, None)  # keep the dict in claim order
        self._claims[source] = Claimed(claim_id, at)
        self._forget_before(at - self.window)

    def found(self, source: str, now: float) -> None:
        """A file was found at ``source``: warn if it was claimed within the window. Once
        per claim: a third part is suspected against the second part's claim."""
        self._forget_before(now - self.window)
        earlier = self._claims.pop(source, None)
        if earlier is None:
            return
        ago = now - earlier.at
        reason = (f"{source} appeared {ago:.0f} s after a file of that name was claimed "
                  f"(claim {earlier.id}): {advice(self.settle)}")
        self.log.warning(EVENT, source=source, earlier_claim=earlier.id,
                         claimed_seconds_ago=round(ago, 1), settle_seconds=self.settle,
                         reason=reason)
        self.store.event(EVENT, file_id=earlier.id, detail=reason)

    def _forget_before(self, cutoff: float) -> None:
        while self._claims:
            oldest = next(iter(self._claims))
            if self._claims[oldest].at >= cutoff:
                return
            del self._claims[oldest]
