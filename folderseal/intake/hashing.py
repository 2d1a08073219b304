"""A folder's hasher: hashes its big claims on a thread of its own.

Hashing a 2 GiB file takes seconds. On the folder's intake thread it would hold up every
small file dropped beside it for as long, so the intake records a big claim without its
hash (:data:`~folderseal.intake.claim.HASH_APART_BYTES`) and hands it here. Until its
hash is recorded the claim is not batched; a crash before that leaves it unhashed, and
the next sweep of the folder's claims hands it here again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from folderseal.core.errors import TransientError
from folderseal.core.logs import get as get_logger
from folderseal.core.model import FileRecord, FileState
from folderseal.intake.claim import Claims
from folderseal.store import Store

POLL_SECONDS = 1.0  # how often the thread looks at the stop flag while idle


class Hasher:
    """Hashes the claims :meth:`add` hands it, one at a time, and calls ``hashed`` after
    each. From its making until :meth:`run` ends, the claims hand it their big files
    (``hash_apart``): it is made just before its thread starts.
    """

    def __init__(self, claims: Claims, store: Store, hashed: Callable[[], None],
                 stop: threading.Event) -> None:
        self.claims = claims
        self.store = store  # connected again on the hasher's own thread
        self.hashed = hashed
        self.stop = stop
        self.log = get_logger(folder=claims.name)
        self._queue: queue.SimpleQueue[FileRecord] = queue.SimpleQueue()
        self._pending: set[str] = set()  # queued or being hashed: a sweep adds them again
        self._lock = threading.Lock()
        claims.hash_apart = self

    def add(self, record: FileRecord) -> None:
        with self._lock:
            if record.id in self._pending:
                return
            self._pending.add(record.id)
        self._queue.put(record)

    def run(self) -> None:
        store = self.store.connect()  # a connection of this thread's own
        try:
            while not self.stop.is_set():
                try:
                    record = self._queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                started = time.monotonic()
                try:
                    # A sweep may hand over a claim hashed (or batched) since it read it.
                    current = store.file(record.id)
                    if current is None or current.state != FileState.CLAIMED \
                            or current.sha256 is not None or current.batch_id is not None:
                        continue
                    if self.claims.finish(current, store):
                        self.log.info("file.hashed", file=record.id, source=record.source_text,
                                      bytes=current.size,
                                      seconds=round(time.monotonic() - started, 2))
                except (OSError, TransientError) as exc:  # the share or the store away
                    self.log.warning("file.hash_postponed", file=record.id,
                                     source=record.source_text, reason=str(exc),
                                     next_step="nothing: the folder's next scan hands it "
                                     "here again")
                finally:
                    with self._lock:
                        self._pending.discard(record.id)
                self.hashed()
        finally:
            self.claims.hash_apart = None
            store.close()
