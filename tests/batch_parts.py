"""A folder's batches and the state machine built from their parts, the way the daemon gives
them to it: the in-memory store on a clock the test moves, a real work folder, outbox and
errors folder in a temp folder, the folder's real sink, and the scripted provider
(:mod:`tests.scripted`) in place of a real one.

Files are claimed into the work folder as the claim leaves them and grouped by the real
batching code; :func:`drive` runs batch turns as a batch thread does.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from folderseal.batches.machine import Machine
from folderseal.core.config import FolderConfig
from folderseal.core.model import BatchRecord
from folderseal.intake.batching import Batches
from folderseal.publish.sink import Sink
from folderseal.store import LEASE_SECONDS, new_id
from folderseal.store.leases import Leases
from folderseal.store.memory import MemoryStore
from folderseal.work import WorkFolder
from tests.scripted import Scripted
from tests.store_backends import Clock

FOLDER = "scans"
NODE = "node-a"


class Backoff:
    """The daemon's backoff as the test sets it (``seconds``: none unless told), recording
    the attempt count it is asked about each time."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.seconds: Callable[[int], float] = lambda attempts: 0.0

    def __call__(self, attempts: int) -> float:
        self.asked.append(attempts)
        return self.seconds(attempts)


@dataclass
class Parts:
    root: Path
    cfg: FolderConfig
    clock: Clock
    store: MemoryStore
    work: WorkFolder
    sink: Sink
    provider: Scripted
    stop: threading.Event
    backoff: Backoff
    machine: Machine

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def batch(self, batch_id: str) -> BatchRecord:
        """The batch as the store has it now (it must exist)."""
        batch = self.store.batch(batch_id)
        assert batch is not None
        return batch

    def machine_on(self, store: MemoryStore) -> Machine:
        """Another batch thread's machine (its own store connection, its own sink)."""
        sink = Sink(FOLDER, self.cfg, self.work, store, store.node)
        return Machine(store, {self.provider.name: self.provider}, {FOLDER: sink},
                       {FOLDER: self.work}, self.state_dir, self.stop, delay=self.backoff)


def folder_config(root: Path, provider: str, *, archive: bool = False) -> FolderConfig:
    """The folder's configuration: a batch is due as soon as files are claimed."""
    for name in ("inbox", "outbox", "errors", "archive", "state"):
        (root / name).mkdir(exist_ok=True)
    return FolderConfig(inbox=root / "inbox", outbox=root / "outbox", errors=root / "errors",
                        archive=root / "archive" if archive else None, work_dir=None,
                        provider=provider, batch_max_wait_seconds=0)


def build(root: Path, provider: Scripted | None = None, *, store: MemoryStore | None = None,
          archive: bool = False) -> Parts:
    """The parts of folder "scans" in ``root``, its work folder owned by the store."""
    provider = provider or Scripted()
    cfg = folder_config(root, provider.name, archive=archive)
    clock = Clock()
    # The hand clock is this host's own clock too (the leases' local deadlines).
    store = store or MemoryStore(NODE, clock=clock, state_dir=root / "state",
                                 leases=Leases(LEASE_SECONDS, clock))
    work = WorkFolder(cfg.work_folder, FOLDER, NODE)
    work.adopt(store.store_id, store.batch_ids)
    sink = Sink(FOLDER, cfg, work, store, NODE)
    stop = threading.Event()
    backoff = Backoff()
    machine = Machine(store, {provider.name: provider}, {FOLDER: sink}, {FOLDER: work},
                      root / "state", stop, delay=backoff)
    return Parts(root, cfg, clock, store, work, sink, provider, stop, backoff, machine)


def claim(parts: Parts, contents: dict[str, bytes]) -> dict[str, str]:
    """Files claimed into the work folder and recorded, as a claim leaves them, in the
    order given (their ids sort so, and so do their entry names): source → file id."""
    ids = {}
    for file_id, (source, data) in zip(sorted(new_id() for _ in contents), contents.items(),
                                       strict=True):
        path = parts.work.claim_dir(file_id) / source
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        st = path.stat()
        parts.store.add_claim(id=file_id, folder=FOLDER, source=source, dev=st.st_dev,
                              ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                              sha256=hashlib.sha256(data).hexdigest(),
                              seen_at=parts.clock() - 5)
        ids[source] = file_id
    return ids


def _no_duplicates(claim_id: str, failure: tuple[str, str]) -> None:
    raise AssertionError(f"claim {claim_id} rejected as a duplicate: {failure}")


def form(parts: Parts) -> str:
    """Every claimed file grouped into one batch by the intake's batching (recorded, its
    manifest written, its files moved into the batch folder): its id."""
    batches = Batches(FOLDER, parts.cfg, parts.provider.name, parts.store, parts.work,
                      _no_duplicates)
    [batch_id] = batches.form(parts.clock())
    return batch_id


def batched(parts: Parts, contents: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    """Files claimed and grouped into one batch: the batch id, and source → file id."""
    ids = claim(parts, contents)
    return form(parts), ids


def drive(parts: Parts, machine: Machine | None = None, turns: int = 200) -> int:
    """Run batch turns as a batch thread does, moving the clock on to the next batch that
    is due whenever none is, until no batch is due any more; the turns taken."""
    machine = machine or parts.machine
    for turn in range(turns):
        if machine.run_once():
            continue
        due = machine.store.next_due()
        if due is None:
            return turn
        parts.clock.now = max(parts.clock.now, due)
    raise AssertionError(f"batches still due after {turns} turns")
