"""A folder's intake built from its parts, the way the daemon gives them to it."""

from __future__ import annotations

import queue
import threading
from typing import Any

from folderseal.core.config import Settings
from folderseal.intake.claim import Failure
from folderseal.intake.folder import FolderIntake
from folderseal.intake.watch import Hint
from folderseal.publish.probe import Probe
from folderseal.store import Store
from folderseal.work import WorkFolder


class Rejected(list[tuple[str, Failure]]):
    """A reject callback that records each rejected claim, then calls ``then``."""

    def __init__(self, then: Any = None) -> None:
        super().__init__()
        self.then = then

    def __call__(self, claim_id: str, failure: Failure) -> None:
        self.append((claim_id, failure))
        if self.then is not None:
            self.then()


def folder_intake(settings: Settings, store: Store, name: str = "scans", *,
                  hints: queue.SimpleQueue[Hint] | None = None,
                  reject: Rejected | None = None, **options: Any) -> FolderIntake:
    """The intake of folder ``name``: its work folder, the probe of its output folders, and
    rejected claims recorded in ``reject`` and handed to the probe's errors thread."""
    folder = settings.folders[name]
    work = WorkFolder(folder.work_folder, name, store.node)
    kind = settings.providers[folder.provider].kind
    probe = Probe(name, folder, settings.state_dir, store, work, folder.provider, kind)
    if reject is None:
        reject = Rejected()
    reject.then = probe.rejected
    return FolderIntake(name, folder, store, work, probe,
                        queue.SimpleQueue() if hints is None else hints, threading.Event(),
                        provider=folder.provider, reject=reject, **options)
