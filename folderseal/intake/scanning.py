"""Finding files in an inbox: scans (the truth) and watch hints, turned into candidates.

A scan lists the inbox every ``poll_interval_seconds`` (polling) or ``rescan_seconds``
(events: inotify may miss something on a share); between scans, watch hints name paths
worth a look. Either way a file the name filter wants becomes a settle candidate
(:mod:`folderseal.intake.settle`); the looks decide when it is ready.
"""

from __future__ import annotations

from folderseal.core import metrics
from folderseal.core.config import FolderConfig
from folderseal.core.logs import get as get_logger
from folderseal.intake.ignore import IgnoredTally, NameFilter
from folderseal.intake.inbox import MAX_DEPTH, list_files
from folderseal.intake.settle import SettleTracker

# How often a scan stats the files it ignores to find the oldest (what status shows of
# them): not at every poll of a share that holds thousands of other programs' files.
IGNORED_REFRESH_SECONDS = 60.0


class Scanner:
    """When one inbox is scanned next, and what its last scan passed over."""

    def __init__(self, name: str, cfg: FolderConfig, tracker: SettleTracker) -> None:
        self.name = name
        self.cfg = cfg
        self.tracker = tracker
        self.filter = NameFilter(cfg.include, cfg.exclude)
        self.prefix = str(cfg.inbox).rstrip("/") + "/"
        self.log = get_logger(folder=name)
        self.ignored = IgnoredTally()  # as of the last scan
        self.ignored_at = -IGNORED_REFRESH_SECONDS  # when its oldest was last looked for
        self.too_deep: list[str] = []  # folders the last scan did not list: too deep
        self.next_at = 0.0
        self.scanned_at = 0.0          # the last scan of the inbox (0: none yet)

    def hint(self, path: str | None, now: float) -> None:
        """A watch hint: a path worth a look, or (None) a scan wanted now."""
        if path is None:
            self.next_at = now
            return
        if not path.startswith(self.prefix):
            return
        source = path[len(self.prefix):]
        if (self.cfg.recursive or "/" not in source) and self.filter.wants_file(source):
            self._seen(source, now)

    def scan(self, now: float, polling: bool) -> None:
        """List the inbox; every file found is a candidate."""
        # Also when the clock stepped back: never a stale tally for as long as that.
        refresh = not 0 <= now - self.ignored_at < IGNORED_REFRESH_SECONDS
        ignored = IgnoredTally(refresh, self.ignored)
        too_deep: list[str] = []
        for source in list_files(self.cfg.inbox, self.filter, self.cfg.recursive, ignored,
                                 too_deep):
            self._seen(source, now)
        ignored.done()
        self.ignored = ignored
        if refresh:
            self.ignored_at = now
        if too_deep != self.too_deep:
            if too_deep:
                self.log.warning("folder.too_deep", folders=too_deep[:5], count=len(too_deep),
                                 advice=f"files more than {MAX_DEPTH} folder levels below "
                                        "the inbox are not sealed: move them higher up")
            self.too_deep = too_deep
        self.scanned_at = now
        interval = self.cfg.poll_interval_seconds if polling else self.cfg.rescan_seconds
        self.next_at = now + interval

    def _seen(self, source: str, now: float) -> None:
        if self.tracker.hint(source, now):
            metrics.FILES_SEEN.labels(self.name).inc()
