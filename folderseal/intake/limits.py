"""What holds a folder's claims back, and why.

An outbox, errors or archive folder that is missing, not writable or not answering
blocks claims: files wait, visible, in the inbox (batches already claimed wait for the
folder in their own backoff). Those folders are looked at off this thread, by the
folder's probe (:mod:`folderseal.publish.probe`): a hung share there must not hold up
the other folders; this takes its last answer, which also says whether the outbox or
the state folder is under ``min_free_bytes``. Claims also stop at
``max_in_flight_files``, and for a few seconds after the state folder refused a write.
A file held back by these is never "stuck": it waits with the reason.
"""

from __future__ import annotations

from folderseal.core.config import FolderConfig
from folderseal.core.logs import get as get_logger
from folderseal.publish import folders
from folderseal.publish.probe import Outputs, Probe
from folderseal.store import Store

PAUSE_SECONDS = 5.0  # after the state folder refused a write
LOOKING = "folderseal is looking at the outbox, errors and archive folders"


class ClaimLimits:
    """Whether one folder may claim now, and how many files."""

    def __init__(self, name: str, cfg: FolderConfig, store: Store, probe: Probe) -> None:
        self.name = name
        self.cfg = cfg
        self.store = store
        self.probe = probe
        self.log = get_logger(folder=name)
        self.outputs: Outputs | None = None       # the probe's last answer
        self.blocked: list[folders.Blocked] = []  # output folders that stop claims
        self.disk_full = ""        # the outbox or state folder under min_free_bytes
        self.paused = ""           # why claims wait now ("" when they do not)
        self.paused_until = 0.0    # after the state folder refused a write

    def check_output_folders(self) -> None:
        """Take the probe's last answer about the output folders (it never waits)."""
        self.probe.start()
        if self.probe.failure is not None:
            raise self.probe.failure
        self.outputs = self.probe.outputs()
        blocked = list(self.outputs.blocked) if self.outputs else []
        self.disk_full = self.outputs.disk_full if self.outputs else ""
        if blocked != self.blocked:
            for block in blocked:
                self.log.warning("folder.blocked", reason=block.reason, advice=block.message)
            if not blocked:
                self.log.info("folder.unblocked", action="claiming again")
                self.probe.rejected()  # any it could not put into errors meanwhile
        self.blocked = blocked

    def closed(self) -> str:
        """Why nothing may be claimed now, not even for errors ("" if claims may go on):
        an output folder blocked, or none looked at yet."""
        if self.blocked:
            return self.blocked[0].message
        return LOOKING if self.outputs is None else ""

    def closed_now(self) -> str:
        """:meth:`closed`, looked at on this thread (``folderseal sign``, which has no main
        loop to hold up)."""
        blocked = folders.blocked(self.cfg)
        return blocked[0].message if blocked else ""

    def room(self) -> int:
        """How many more files may be claimed now (0 with the reason in ``paused``)."""
        in_flight = self.store.count_in_flight(self.name)
        if in_flight >= self.cfg.max_in_flight_files:
            self.paused = (f"{in_flight} files are in flight (max_in_flight_files); waiting "
                           "for the provider")
            return 0
        self.paused = self.disk_full  # the probe's answer: no share is touched here
        return 0 if self.disk_full else self.cfg.max_in_flight_files - in_flight

    def pause(self, reason: str, now: float) -> None:
        """The state folder refused a write: claim nothing for a while."""
        if reason != self.paused:
            self.log.warning("folder.paused", reason=reason)
        self.paused = reason
        self.paused_until = now + PAUSE_SECONDS

    def pausing(self, now: float) -> bool:
        """Still within a pause (:meth:`pause`)."""
        if now < self.paused_until:
            return True
        self.paused_until = 0.0
        return False
