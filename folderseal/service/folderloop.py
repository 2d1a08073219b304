"""One folder's intake on a thread of its own, so that a share that hangs stops only it.

Every look at a share can block for as long as the share does not answer (a hard-mounted
NFS or SMB share whose server is gone). Each folder's intake therefore runs its steps on
a thread of its own, with its own store connection and its own watch hints: the other
folders go on claiming and sealing, and the daemon's main loop goes on with systemd's
watchdog pings. The main loop reads here how long the current round has lasted: a round
past ``HUNG_SECONDS`` is reported as a hung folder (in ``status`` and ``/healthz``), not
as a stuck daemon, since a restart would hang on the same share.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from folderseal.intake.folder import FolderIntake
from folderseal.intake.watch import Hint
from folderseal.publish.probe import HUNG_SECONDS

NOTES_SECONDS = 1.0  # how often a folder's notes for the heartbeat are made afresh
MAX_SLEEP = 1.0


class FolderLoop:
    """Runs :meth:`FolderIntake.step` on its own thread until ``stop`` is set."""

    def __init__(self, intake: FolderIntake, hints: queue.SimpleQueue[Hint],
                 wake: threading.Event, stop: threading.Event) -> None:
        self.intake = intake
        self.hints = hints
        self.wake = wake
        self.stop = stop
        self.round_began: float | None = None  # time.monotonic() of the round under way
        self._notes: dict[str, Any] = {}
        self._notes_at = 0.0
        self._first_round_noted = False  # notes made after the first scan (or outage)

    def run(self) -> None:
        intake = self.intake
        while not self.stop.is_set():
            now = time.time()
            self.round_began = time.monotonic()
            paths: list[str | None] = []
            while True:
                try:
                    paths.append(self.hints.get_nowait()[1])
                except queue.Empty:
                    break
            intake.step(now, paths)
            if now - self._notes_at >= NOTES_SECONDS or not self._first_round_noted:
                scanned = intake.first_scan_done
                self.take_notes(now)
                self._first_round_noted = scanned
            self.round_began = None
            self.wake.wait(min(MAX_SLEEP, max(0.0, intake.next_wakeup() - time.time())))
            self.wake.clear()

    def take_notes(self, now: float) -> None:
        """Note what the folder shows (on its thread, between steps)."""
        self._notes, self._notes_at = self.intake.notes(now), now

    def hung_seconds(self) -> float:
        """How long the round under way has lasted, if past HUNG_SECONDS (else 0)."""
        began = self.round_began
        lasted = 0.0 if began is None else time.monotonic() - began
        return lasted if lasted >= HUNG_SECONDS else 0.0

    def notes(self) -> dict[str, Any]:
        """The folder's notes for the heartbeat (as of its last round); a hung folder's
        say so as its problem."""
        notes = dict(self._notes)
        hung = self.hung_seconds()
        if hung:
            inbox = self.intake.cfg.inbox
            notes["problem"] = hung_problem(self.intake.name, str(inbox), hung)
        return notes

    @property
    def ready(self) -> bool:
        """Scanned once (or out of reach) and noted so, or hung: nothing more to wait for
        at start."""
        return self._first_round_noted or bool(self.hung_seconds())


class HungFolders:
    """The folders whose loop waits on a share that hangs: named for ``/healthz``, and
    logged as each begins to wait (``folder.hung``) and answers again
    (``folder.resumed``)."""

    def __init__(self, loops: dict[str, FolderLoop], log: Any) -> None:
        self.loops = loops
        self.log = log
        self._logged: set[str] = set()

    def named(self) -> list[str]:
        return [f"folder {name}: {loop.notes()['problem']}"
                for name, loop in self.loops.items() if loop.hung_seconds()]

    def log_changes(self) -> None:
        hung = {name: loop for name, loop in self.loops.items() if loop.hung_seconds()}
        for name in sorted(set(hung) - self._logged):
            self.log.warning("folder.hung", folder=name, reason=hung[name].notes()["problem"])
        for name in sorted(self._logged - set(hung)):
            self.log.info("folder.resumed", folder=name, action="claiming again")
        self._logged = set(hung)


def hung_problem(folder: str, inbox: str, seconds: float) -> str:
    """What ``status`` says of a folder whose intake has waited on the file system."""
    return (f"its intake has waited {seconds:.0f} s for the file system to answer: the "
            f"inbox {inbox} or its work folder is on a share that hangs (check the share's "
            f"server and the mount); the other folders go on, and folder {folder} resumes "
            "by itself once the share answers")
