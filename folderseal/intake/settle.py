"""When is a dropped file finished? Two equal looks ``settle_seconds`` apart.

Scanners write page by page and FTP uploads trickle, so a file is ready only when
its size, mtime and inode are unchanged across two looks ``settle_seconds`` apart.
Watch events and scans only *hint* that a path is worth a look; the looks decide.
A file that stopped changing must also be whole by its content (a JPEG with its end
marker, see :mod:`folderseal.intake.complete`): a writer may pause longer than
``settle_seconds``. A candidate that never becomes ready is never dropped: it is
looked at again and again, and after ``stuck_after_seconds`` it is reported as stuck
(and goes to the errors folder with the reason it waited).

The tracker owns readiness: when a candidate is looked at, whether it settled
(:meth:`SettleTracker.looked`), whether a settled file may be taken
(:meth:`SettleTracker.not_ready`: the empty-file grace, and the content check, which
reads a stable file once per look), why it waits and when it is stuck. It is
bookkeeping with an injected clock; the intake does the looks (stat). Its candidates
are its own: other modules ask through its methods. The content check is written never
to raise; should some bytes still make it raise, the file is one it cannot tell about
(logged once): it is taken, and the signer decides.
"""

from __future__ import annotations

import errno
import heapq
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from folderseal.core.logs import get as get_logger
from folderseal.intake import complete

EMPTY_SETTLE_FACTOR = 10
# What a content check could still raise on bytes nobody foresaw (not OSError: that is
# the share's trouble, which the intake handles).
CHECK_ERRORS = (struct.error, OverflowError, ValueError)


@dataclass(frozen=True, slots=True)
class Look:
    """What one ``stat`` of a candidate showed."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    regular: bool

    def same_as(self, other: Look) -> bool:
        return (self.dev, self.ino, self.size, self.mtime_ns) == (
            other.dev, other.ino, other.size, other.mtime_ns)


@dataclass(slots=True)
class Candidate:
    source: str
    first_seen: float
    first_looked: float | None = None  # stuck_after counts from here, not from the hint
    looked_at: float | None = None     # the latest look
    steady: bool = False               # that look came on time (the daemon was not busy)
    last: Look | None = None
    stable_since: float = 0.0       # when the current Look was first seen
    next_look_at: float = 0.0
    waiting_for: str = ""           # why a stable file is not ready yet (shown in status)
    held: bool = False              # held back (claims closed): not "stuck"
    check_failed: bool = False      # its content check raised (logged once)


class SettleTracker:
    """Candidates of one inbox, and when each should be looked at next."""

    def __init__(self, settle_seconds: float, stuck_after_seconds: float,
                 folder: str = "") -> None:
        self.settle = settle_seconds
        self.stuck_after = stuck_after_seconds
        self._candidates: dict[str, Candidate] = {}
        # (next_look_at, source) of every candidate, soonest first, so that a backlog of
        # 100,000 files costs no scan of them all at each step. An entry whose candidate
        # is gone or was given another time since is stale: passed over when it comes up.
        self._looks: list[tuple[float, str]] = []
        self.log = get_logger(folder=folder)

    def _schedule(self, candidate: Candidate, at: float) -> None:
        candidate.next_look_at = at
        heapq.heappush(self._looks, (at, candidate.source))

    def _current(self, entry: tuple[float, str]) -> bool:
        candidate = self._candidates.get(entry[1])
        return candidate is not None and candidate.next_look_at == entry[0]

    def hint(self, source: str, now: float) -> bool:
        """Something may have happened at ``source``: make sure it gets looked at. True
        when the file is new to the tracker."""
        if source in self._candidates:
            return False
        candidate = self._candidates[source] = Candidate(source, first_seen=now)
        self._schedule(candidate, now)
        return True

    def due(self, now: float, limit: int | None = None) -> list[str]:
        """The candidates due for a look at ``now``, soonest first (the first ``limit``).
        They stay due until a look or a wait gives them another time."""
        looks = self._looks
        found: list[str] = []
        kept: list[tuple[float, str]] = []
        while looks and looks[0][0] <= now and (limit is None or len(found) < limit):
            entry = heapq.heappop(looks)
            if self._current(entry):
                found.append(entry[1])
                kept.append(entry)
        for entry in kept:
            heapq.heappush(looks, entry)
        return found

    def looked(self, source: str, look: Look | None, now: float) -> bool:
        """Record a look; True when the file is unchanged for ``settle_seconds``."""
        candidate = self._candidates.get(source)
        if candidate is None:
            return False
        candidate.held = False
        if look is None:  # gone (moved away or deleted by its writer)
            del self._candidates[source]
            return False
        if candidate.first_looked is None:
            candidate.first_looked = now
        gap = now - (candidate.looked_at if candidate.looked_at is not None else now)
        candidate.steady = gap <= 2 * max(self.settle, 1.0)
        candidate.looked_at = now
        if candidate.last is None or not look.same_as(candidate.last):
            candidate.last = look
            candidate.stable_since = now
            candidate.waiting_for = ""
            self._schedule(candidate, now + self.settle)
            return False
        if now - candidate.stable_since >= self.settle:
            return True
        self._schedule(candidate, candidate.stable_since + self.settle)
        return False

    def not_ready(self, source: str, path: Path, look: Look, now: float) -> str:
        """Why a stable file may not be claimed yet ("" if it may): empty for less than
        ten settle periods, not readable by folderseal, or not whole by its content."""
        if look.size == 0:
            # Some writers create a file and fill it later: an empty file must stay empty
            # ten settle periods before it is taken (and failed as empty).
            candidate = self._candidates.get(source)
            since = candidate.stable_since if candidate else now
            grace = EMPTY_SETTLE_FACTOR * self.settle
            return "" if now - since >= grace else "the file is empty; waiting for content"
        try:
            return content_not_ready(path, look.size)
        except CHECK_ERRORS as exc:
            candidate = self._candidates.get(source)
            if candidate is None or not candidate.check_failed:
                self.log.warning("file.content_check_failed", source=source,
                                 error=str(exc) or type(exc).__name__,
                                 action="taken as it is: the signer decides")
            if candidate is not None:
                candidate.check_failed = True
            return ""

    def wait(self, source: str, reason: str, now: float, held: bool = False) -> None:
        """A stable file is not ready yet (no ``%%EOF``, still locked): look again later.

        ``held`` means it is held back (claims closed: an output folder is missing, say):
        a file held back for long is not stuck, so it never goes to errors for that.
        """
        candidate = self._candidates.get(source)
        if candidate is not None:
            candidate.waiting_for = reason
            candidate.held = held
            self._schedule(candidate, now + max(self.settle, 1.0))

    def forget(self, source: str) -> Candidate | None:
        """Drop a candidate (claimed, or gone); the candidate it was, if any."""
        return self._candidates.pop(source, None)

    def first_seen(self, source: str) -> float | None:
        """When ``source`` was first hinted (None: not a candidate)."""
        candidate = self._candidates.get(source)
        return candidate.first_seen if candidate else None

    def why_stuck(self, candidate: Candidate) -> str:
        """Why a stuck candidate goes to errors (what it waited for)."""
        return (f"it never became ready within {self.stuck_after:.0f} s: "
                f"{candidate.waiting_for or 'it kept changing'}")

    def stuck(self, now: float, looked: Collection[str] | None = None) -> list[Candidate]:
        """Candidates still not ready ``stuck_after`` seconds after their first look; with
        ``looked``, only those just looked at. A look that came late (the daemon was busy,
        say claiming a 2 GiB file) and found a change says nothing of a file that keeps
        changing: it gets another look on time first."""
        candidates = self._candidates.values() if looked is None else \
            [c for source in looked if (c := self._candidates.get(source)) is not None]
        return [c for c in candidates
                if not c.held and c.first_looked is not None and c.steady
                and now - c.first_looked >= self.stuck_after]

    def next_look(self) -> float | None:
        looks = self._looks
        while looks and not self._current(looks[0]):
            heapq.heappop(looks)
        if len(looks) > 4 * len(self._candidates) + 1000:  # mostly stale: rebuild
            looks[:] = [(c.next_look_at, c.source) for c in self._candidates.values()]
            heapq.heapify(looks)
        return looks[0][0] if looks else None

    def count(self) -> int:
        """How many candidates there are."""
        return len(self._candidates)

    def waiting(self, limit: int | None = None) -> list[Candidate]:
        """The candidates, oldest first (the first ``limit``)."""
        if limit is None:
            return sorted(self._candidates.values(), key=lambda c: c.first_seen)
        return heapq.nsmallest(limit, self._candidates.values(), key=lambda c: c.first_seen)


def content_not_ready(path: Path, size: int) -> str:
    """Why the file at ``path`` is not whole by its content, or cannot be read ("" if it
    is whole)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"folderseal (uid {os.geteuid()}) may not read it; fix its permissions"
        return f"cannot open it: {exc.strerror}"
    try:
        return complete.why_incomplete(fd, size, path.name)
    finally:
        os.close(fd)
