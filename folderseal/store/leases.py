"""The leases this process holds on batches, as it knows them itself.

The store decides who holds a batch (its ``claimed_by``, ``epoch`` and ``lease_until``,
on the store's clock). This process keeps, beside each lease it took, a deadline of its
own on ``CLOCK_BOOTTIME``: taken before the store was asked, so it never runs past the
store's expiry, and counting on through a suspend or a SIGSTOP, which a process cannot
notice by itself. Past that deadline the process behaves as if the lease were gone: it
makes no call to a provider and touches no file for the batch before the store confirms
the lease again.

One :class:`Leases` is shared by the store connections of one process and node (each
thread has its own connection), so the lease keeper's thread can renew, on its own
connection, the leases the batch threads took on theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


def boottime() -> float:
    """Seconds on a clock no one sets and that counts while the process is stopped."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease as this process took it."""

    holder: str      # "<node>/<token>", new at each acquisition
    epoch: int       # the batch's epoch this acquisition made (grows with each one)
    deadline: float  # on boottime(): the lease is not counted on past it
    taken: float     # on boottime(): when it was acquired (the keeper's step limit)


class Leases:
    """The leases of one process and node, by batch id; thread-safe."""

    def __init__(self, seconds: float, clock: Callable[[], float] = boottime) -> None:
        self.seconds = seconds
        self.clock = clock  # this host's own count (tests move it by hand)
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}

    def get(self, batch_id: str) -> Lease | None:
        with self._lock:
            return self._held.get(batch_id)

    def took(self, batch_id: str, holder: str, epoch: int, asked_at: float) -> None:
        """A lease acquired by a request sent at ``asked_at`` (boottime)."""
        with self._lock:
            self._held[batch_id] = Lease(holder, epoch, asked_at + self.seconds, asked_at)

    def renewed(self, batch_id: str, holder: str, asked_at: float) -> None:
        """The store extended ``holder``'s lease by a request sent at ``asked_at``."""
        with self._lock:
            lease = self._held.get(batch_id)
            if lease is not None and lease.holder == holder:
                self._held[batch_id] = Lease(holder, lease.epoch, asked_at + self.seconds,
                                             lease.taken)

    def drop(self, batch_id: str, holder: str | None = None) -> None:
        """Forget a lease (only ``holder``'s, when given)."""
        with self._lock:
            lease = self._held.get(batch_id)
            if lease is not None and (holder is None or lease.holder == holder):
                del self._held[batch_id]

    def held(self) -> dict[str, Lease]:
        with self._lock:
            return dict(self._held)

    def fresh(self, lease: Lease, share: float = 0.0) -> bool:
        """True while more than ``share`` of the lease's time is left by this process's
        own count."""
        return lease.deadline - self.clock() > self.seconds * share
